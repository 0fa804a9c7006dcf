-- A device's commands, newest first. $1 device id, $2 state (NULL: any), $3 limit, $4 offset.
SELECT id::text AS id, device_id::text AS device_id, name, params::text AS params, state,
       (extract(epoch from created_at) * 1000)::bigint AS created_ms,
       (extract(epoch from expires_at) * 1000)::bigint AS expires_ms,
       (extract(epoch from updated_at) * 1000)::bigint AS updated_ms,
       (extract(epoch from delivered_at) * 1000)::bigint AS delivered_ms,
       timeout_s, result::text AS result, error, seq, request_hash
FROM commands WHERE device_id = $1::uuid AND ($2::text IS NULL OR state = $2::text)
ORDER BY seq DESC LIMIT $3 OFFSET $4
