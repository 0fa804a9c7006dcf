-- A device's commands that are not yet delivered and not expired, in creation order. $1 device id,
-- $2 now (epoch ms), $3 limit.
SELECT {{command_columns}}
FROM commands WHERE device_id = $1::uuid AND state IN ('queued', 'sent') AND expires_at > to_timestamp($2::bigint / 1000.0)
ORDER BY seq LIMIT $3
