-- Scheduling (issue 18): when a meeting is planned to start (Unix seconds,
-- UTC) and for how long, both absent for a meeting that is not scheduled; and
-- whether guests may be seated before a host or co-host is in the meeting
-- (when not, they wait until one arrives).
ALTER TABLE meetings ADD COLUMN starts_at INTEGER;
ALTER TABLE meetings ADD COLUMN duration_minutes INTEGER;
ALTER TABLE meetings ADD COLUMN join_before_host INTEGER NOT NULL DEFAULT 1;
