-- The PostgreSQL twin of ../sqlite/0004_disabled_users.sql.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
