-- The PostgreSQL twin of ../sqlite/0007_publishing.sql.
ALTER TABLE meetings ADD COLUMN publish TEXT NOT NULL DEFAULT 'everyone';
