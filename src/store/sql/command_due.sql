-- Commands the sweep must look at: undelivered past expires_at, delivered past their result deadline.
-- $1 now (epoch ms), $2 limit of each kind.
(SELECT id::text AS id, device_id::text AS device_id, name, params::text AS params, state,
       (extract(epoch from created_at) * 1000)::bigint AS created_ms,
       (extract(epoch from expires_at) * 1000)::bigint AS expires_ms,
       (extract(epoch from updated_at) * 1000)::bigint AS updated_ms,
       (extract(epoch from delivered_at) * 1000)::bigint AS delivered_ms,
       timeout_s, result::text AS result, error, seq, request_hash
 FROM commands WHERE state IN ('queued', 'sent') AND expires_at <= to_timestamp($1::bigint / 1000.0) LIMIT $2)
UNION ALL
(SELECT id::text AS id, device_id::text AS device_id, name, params::text AS params, state,
       (extract(epoch from created_at) * 1000)::bigint AS created_ms,
       (extract(epoch from expires_at) * 1000)::bigint AS expires_ms,
       (extract(epoch from updated_at) * 1000)::bigint AS updated_ms,
       (extract(epoch from delivered_at) * 1000)::bigint AS delivered_ms,
       timeout_s, result::text AS result, error, seq, request_hash
 FROM commands WHERE state IN ('delivered', 'in_progress') AND timeout_at <= to_timestamp($1::bigint / 1000.0) LIMIT $2)
