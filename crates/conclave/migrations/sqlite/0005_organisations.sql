-- Organisations (issue 20).
-- Who may join a meeting: only_signed_in (0001) keeps meaning "signed-in
-- accounts only"; organisation_only narrows that to the organisation's
-- people ([organisation] in the configuration) and the outside addresses in
-- invited_emails (lower-case, one per line), checked by the server
-- (crate::join_policy).
ALTER TABLE meetings ADD COLUMN organisation_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN invited_emails TEXT NOT NULL DEFAULT '';
-- Whether the account may create meetings: a provider's host_groups decide
-- at each sign-in; local accounts always may.
ALTER TABLE users ADD COLUMN may_host INTEGER NOT NULL DEFAULT 1;
-- The audit log of sign-ins and their failures (conclave admin signins).
-- No foreign key: an entry outlives the account it names.
CREATE TABLE signin_events (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    method   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    user_id  INTEGER,
    username TEXT,
    detail   TEXT,
    address  TEXT
);
CREATE INDEX signin_events_at ON signin_events(at);
