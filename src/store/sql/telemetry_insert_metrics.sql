-- Telemetry: a batch of metric points, one row per array element. $1 device uuid[], $2 name_id int[],
-- $3 time bigint[] (epoch ms), $4 value float8[], $5 unit text[], $6 tags text[] (JSON objects or NULL).
INSERT INTO metrics (device_id, name_id, time, value, unit, tags)
SELECT d, n, timestamptz 'epoch' + ms * interval '1 millisecond', v, u, t::jsonb
FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::float8[], $5::text[], $6::text[]) AS p(d, n, ms, v, u, t)
