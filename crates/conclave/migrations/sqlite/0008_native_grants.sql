-- A native client's sign-in through a provider (RFC 8252 loopback redirect,
-- `conclave login`): after the provider's callback the server redirects to
-- the client's loopback port with a one-time code, and the client trades
-- the code and its PKCE verifier for a session (POST
-- /api/v1/auth/native/token). Only the SHA-256 of the code is stored; a
-- grant is used once and lives two minutes. `id_token` is the provider's
-- token when the client's nonce committed to its MLS key (for its leaf).
CREATE TABLE native_grants (
    code_hash      BLOB    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_challenge TEXT    NOT NULL,
    id_token       TEXT,
    session_secs   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
