-- The PostgreSQL twin of ../sqlite/0002_guest_identity.sql.
CREATE TABLE server_keys (
    name       TEXT   PRIMARY KEY,
    value      BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

-- PostgreSQL changes the CHECK constraint in place (SQLite had to rebuild).
ALTER TABLE meeting_bans
    DROP CONSTRAINT meeting_bans_kind,
    ADD CONSTRAINT meeting_bans_kind CHECK (kind IN ('account', 'guest', 'address'));
CREATE INDEX meeting_bans_value ON meeting_bans(kind, value);
