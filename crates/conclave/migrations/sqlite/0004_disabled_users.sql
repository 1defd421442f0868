-- An administrator can disable an account (`conclave admin disable-user`):
-- when this is set, the account signs in by no means (password, provider,
-- link, API token) and its sessions stop working, but it and its meetings
-- are kept, so that `enable-user` can bring it back.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
