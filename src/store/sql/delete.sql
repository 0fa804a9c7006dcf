-- Deletes a device (its credential cascades; its history goes by delete_history.sql, next, in the same
-- transaction) and records its retained topics as to be cleared. $1 id. Returns its hardware_id (no row:
-- no such device).
WITH d AS (DELETE FROM devices WHERE id = $1::uuid RETURNING id, hardware_id),
t AS (INSERT INTO retained_clears (device_id, deleted_at) SELECT id, now() FROM d ON CONFLICT (device_id) DO NOTHING)
SELECT hardware_id FROM d
