-- Every device's current status document, oldest change first (republished when the broker lost them).
-- No parameters.
SELECT id::text AS id, name, device_type, hardware_id, status,
       (extract(epoch from last_seen) * 1000)::bigint AS last_seen_ms,
       (extract(epoch from status_changed_at) * 1000)::bigint AS status_changed_ms, status_reason, status_seq
FROM devices ORDER BY status_changed_at
