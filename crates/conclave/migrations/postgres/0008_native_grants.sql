-- The PostgreSQL twin of ../sqlite/0008_native_grants.sql.
CREATE TABLE native_grants (
    code_hash      BYTEA  PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_challenge TEXT   NOT NULL,
    id_token       TEXT,
    session_secs   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
