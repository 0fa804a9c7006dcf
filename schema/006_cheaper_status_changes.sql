-- 006: a status change (the 100,000-device expiry storm of issue 11) writes less.
-- devices_watch_idx: never scanned (deadlines live in memory; no statement
-- filters on last_seen), yet it named last_seen and connected, so every
-- heartbeat flush and every status change wrote an entry into it (and could not
-- be a heap-only update).
-- The history's foreign key: its check ran once per history row (a lookup of the
-- device, FOR KEY SHARE), 30-38 % of a 20,000-row write_states; the cascade it
-- gave is now the delete's own statement (delete_history.sql, same transaction).
-- fillfactor 50 (was 90): room on each page for the new versions a storm writes
-- (the transition, then the broker's acknowledgement), so they stay on the page
-- and the acknowledgement is heap-only; applies to pages written from now on.
-- Measured on 100,000 devices (20,000-row batches, write_states then
-- mark_published, as in a storm): 8.7-10.5 s + 3.4-3.9 s before, 4.7-5.2 s +
-- 1.6 s after. devices_status_created_idx stays: it serves GET /devices?status=,
-- which would otherwise scan every device.
DROP INDEX IF EXISTS devices_watch_idx;
ALTER TABLE device_status_history DROP CONSTRAINT IF EXISTS device_status_history_device_id_fkey;
ALTER TABLE devices SET (fillfactor = 50);
