-- Every blocked hardware_id, oldest block first. No parameters.
SELECT hardware_id, reason, (extract(epoch from blocked_at) * 1000)::bigint AS blocked_ms
FROM blocked_hardware_ids ORDER BY blocked_at, hardware_id
