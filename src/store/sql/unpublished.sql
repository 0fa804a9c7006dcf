-- Outbox: status documents whose retained message the broker has not acknowledged. $1 limit.
SELECT id::text AS id, name, device_type, hardware_id, status,
       (extract(epoch from last_seen) * 1000)::bigint AS last_seen_ms,
       (extract(epoch from status_changed_at) * 1000)::bigint AS status_changed_ms, status_reason, status_seq
FROM devices WHERE status_seq <> published_seq LIMIT $1
