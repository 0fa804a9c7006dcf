-- 009: a status change is a heap-only update. devices_status_created_idx was the
-- last index naming a column a status change writes (status), so every
-- transition (a 100,000-device expiry storm: 100,000 of them) wrote a new entry
-- into each of the table's five indexes. Without it, and with the free space
-- fillfactor 50 leaves on each page, the transition and its acknowledgement stay
-- on the page and touch no index. GET /devices?status= is served without it: the
-- service knows every device's status in memory, and for a status few devices
-- have it passes their ids (primary-key lookups); for a common one the
-- created_at order finds the page's rows after a short scan (find_devices.sql).
DROP INDEX IF EXISTS devices_status_created_idx;
