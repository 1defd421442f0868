-- Guest identities are minted and signed by the server (see src/guest.rs);
-- the signing key lives here so that guest cookies outlive restarts.
CREATE TABLE server_keys (
    name       TEXT    PRIMARY KEY,
    value      BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- A removal also records the network it came from (an IPv4 address or an
-- IPv6 /64). SQLite cannot change a CHECK constraint in place: rebuild.
CREATE TABLE meeting_bans_new (
    meeting_id TEXT    NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('account', 'guest', 'address')),
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (meeting_id, kind, value)
);
INSERT INTO meeting_bans_new SELECT meeting_id, kind, value, created_at FROM meeting_bans;
DROP TABLE meeting_bans;
ALTER TABLE meeting_bans_new RENAME TO meeting_bans;
-- Finds whether an old, unsigned guest cookie is banned anywhere.
CREATE INDEX meeting_bans_value ON meeting_bans(kind, value);
