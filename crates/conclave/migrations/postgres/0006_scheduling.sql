-- The PostgreSQL twin of ../sqlite/0006_scheduling.sql.
ALTER TABLE meetings ADD COLUMN starts_at BIGINT;
ALTER TABLE meetings ADD COLUMN duration_minutes BIGINT;
ALTER TABLE meetings ADD COLUMN join_before_host BOOLEAN NOT NULL DEFAULT TRUE;
