-- A device's status history, newest first. $1 id, $2 limit.
SELECT from_status, to_status, reason, (extract(epoch from at) * 1000)::bigint AS at_ms
FROM device_status_history WHERE device_id = $1::uuid ORDER BY at DESC, id DESC LIMIT $2
