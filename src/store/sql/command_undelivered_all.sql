-- Every command not yet delivered and not expired, in creation order (the outbox, after a start or a
-- lost broker link). $1 now (epoch ms), $2 limit, $3 after this seq (paging).
SELECT id::text AS id, device_id::text AS device_id, name, params::text AS params, state,
       (extract(epoch from created_at) * 1000)::bigint AS created_ms,
       (extract(epoch from expires_at) * 1000)::bigint AS expires_ms,
       (extract(epoch from updated_at) * 1000)::bigint AS updated_ms,
       (extract(epoch from delivered_at) * 1000)::bigint AS delivered_ms,
       timeout_s, result::text AS result, error, seq, request_hash
FROM commands WHERE state IN ('queued', 'sent') AND expires_at > to_timestamp($1::bigint / 1000.0) AND seq > $3
ORDER BY seq LIMIT $2
