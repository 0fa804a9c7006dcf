-- Telemetry: every device's latest metric values, at start-up (of devices that
-- still exist).
SELECT l.device_id, n.name, (extract(epoch FROM l.time) * 1000)::bigint AS ms, l.value, l.unit
FROM metrics_latest l JOIN metric_names n ON n.id = l.name_id JOIN devices d ON d.id = l.device_id
