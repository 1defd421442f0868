-- Accounts of hosts. A NULL password_hash means the account can sign in only
-- through a one-time link (the first-start admin, before it sets a password).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- Browser sessions. Only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- Personal API tokens for scripts and bots. Only the SHA-256 is stored.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

-- One-time sign-in links (first start, `conclave admin signin-link`).
CREATE TABLE signin_links (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);

-- Meetings persist until their owner deletes them. The passcode is kept so that
-- the owner can copy the invite link again; joins are checked against the
-- argon2id hash so that an unknown meeting costs the same time as a known one.
CREATE TABLE meetings (
    id               TEXT    PRIMARY KEY,
    owner_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title            TEXT    NOT NULL,
    passcode         TEXT,
    passcode_hash    TEXT,
    waiting_room     INTEGER NOT NULL,
    screen_share     TEXT    NOT NULL,
    chat             INTEGER NOT NULL,
    self_unmute      INTEGER NOT NULL,
    rename_self      INTEGER NOT NULL,
    only_signed_in   INTEGER NOT NULL,
    max_participants INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX meetings_owner ON meetings(owner_id);

-- Removed members may not rejoin: by account id or guest session key.
CREATE TABLE meeting_bans (
    meeting_id TEXT    NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('account', 'guest')),
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (meeting_id, kind, value)
);
