-- Telemetry: every device's latest metric values, at start-up.
SELECT l.device_id, n.name, (extract(epoch FROM l.time) * 1000)::bigint AS ms, l.value, l.unit
FROM metrics_latest l JOIN metric_names n ON n.id = l.name_id
