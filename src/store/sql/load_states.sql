-- Start-up: every device's status document and state, read through a cursor in pages. No parameters.
SELECT id::text AS id, name, device_type, hardware_id, status,
       (extract(epoch from last_seen) * 1000)::bigint AS last_seen_ms,
       (extract(epoch from status_changed_at) * 1000)::bigint AS status_changed_ms, status_reason, status_seq,
       connected, reported_error, maintenance, offline_after, presence_session
FROM devices
