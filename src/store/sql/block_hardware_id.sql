-- Blocks a hardware_id from registering (again: updates the reason). $1 hardware_id, $2 reason (may be
-- NULL), $3 now (epoch ms).
INSERT INTO blocked_hardware_ids (hardware_id, reason, blocked_at)
VALUES ($1, $2, to_timestamp($3::bigint / 1000.0))
ON CONFLICT (hardware_id) DO UPDATE SET reason = excluded.reason
