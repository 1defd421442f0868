-- View-only attendees (issue 23): who may publish media, 'everyone' or
-- 'allowed' (hosts, co-hosts and the participants a moderator allows).
ALTER TABLE meetings ADD COLUMN publish TEXT NOT NULL DEFAULT 'everyone';
