-- Telemetry: the latest value of each metric of each device in a batch (one element per
-- device and name); an older time never replaces a newer one. $1 device uuid[], $2 name_id int[], $3 time bigint[] (epoch ms), $4 value float8[], $5 unit text[].
INSERT INTO metrics_latest (device_id, name_id, time, value, unit)
SELECT d, n, timestamptz 'epoch' + ms * interval '1 millisecond', v, u
FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::float8[], $5::text[]) AS p(d, n, ms, v, u)
ON CONFLICT (device_id, name_id) DO UPDATE
SET time = excluded.time, value = excluded.value, unit = excluded.unit
WHERE metrics_latest.time <= excluded.time
