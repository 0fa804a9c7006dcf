-- pgbench script head for the batched side: pick one precomputed batch of
-- device ids (table bench_batches, made by scripts/bench.sh) and a fresh
-- timestamp, as the four text arrays the service binds. scripts/bench.sh
-- appends the service's own flush_last_seen statement, read from
-- src/store/device_store.cpp, with $1..$4 replaced by :ids :ms :refresh :session.
\set b random(1, :nbatches)
SELECT ids, array_fill((extract(epoch from clock_timestamp()) * 1000)::bigint, ARRAY[cardinality(ids)]) AS ms, array_fill(false, ARRAY[cardinality(ids)]) AS refresh, array_fill(-1::bigint, ARRAY[cardinality(ids)]) AS session FROM bench_batches WHERE b = :b \gset
