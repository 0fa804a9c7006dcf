-- Every command not yet delivered and not expired, in creation order (the outbox, after a start or a
-- lost broker link). $1 now (epoch ms), $2 limit, $3 after this seq (paging).
SELECT {{command_columns}}
FROM commands WHERE state IN ('queued', 'sent') AND expires_at > to_timestamp($1::bigint / 1000.0) AND seq > $3
ORDER BY seq LIMIT $2
