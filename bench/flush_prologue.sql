-- pgbench script head for the batched side: pick one precomputed batch of
-- device ids (table bench_batches, made by scripts/bench.sh) and a fresh
-- timestamp, as the six arrays the service binds (heartbeats without
-- attributes: the three attribute arrays are all NULL, i.e. unchanged).
-- scripts/bench.sh appends the service's own statement, src/store/sql/flush_last_seen.sql,
-- with $1..$6 replaced by :ids :ms :session :firmware_version :ip_address :metadata
-- (bench/report.py flush-statement).
\set b random(1, :nbatches)
SELECT ids, array_fill((extract(epoch from clock_timestamp()) * 1000)::bigint, ARRAY[cardinality(ids)]) AS ms, array_fill(-1::bigint, ARRAY[cardinality(ids)]) AS session, array_fill(NULL::text, ARRAY[cardinality(ids)]) AS firmware_version, array_fill(NULL::text, ARRAY[cardinality(ids)]) AS ip_address, array_fill(NULL::text, ARRAY[cardinality(ids)]) AS metadata FROM bench_batches WHERE b = :b \gset
