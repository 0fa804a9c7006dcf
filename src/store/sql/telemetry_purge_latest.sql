-- Telemetry: the latest values of devices that no longer exist (deleted), which
-- metrics_latest (no foreign key, so a write never waits on devices) would
-- otherwise keep for ever. Returns how many devices' rows went.
WITH gone AS (
    DELETE FROM metrics_latest l
    WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = l.device_id)
    RETURNING l.device_id
)
SELECT count(DISTINCT device_id) AS devices FROM gone
