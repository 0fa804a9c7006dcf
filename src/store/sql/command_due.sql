-- Commands the sweep must look at: undelivered past expires_at, delivered past their result deadline.
-- $1 now (epoch ms), $2 limit of each kind.
(SELECT {{command_columns}}
 FROM commands WHERE state IN ('queued', 'sent') AND expires_at <= to_timestamp($1::bigint / 1000.0) LIMIT $2)
UNION ALL
(SELECT {{command_columns}}
 FROM commands WHERE state IN ('delivered', 'in_progress') AND timeout_at <= to_timestamp($1::bigint / 1000.0) LIMIT $2)
