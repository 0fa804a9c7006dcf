-- Telemetry: one device's points in [from, to) by time bucket (aligned to the Unix epoch) and metric,
-- with every aggregate. $1 device uuid, $2 name (NULL: every metric), $3 from and $4 to (epoch ms),
-- $5 bucket (ms), $6 limit.
SELECT n.name,
       (extract(epoch FROM date_bin($5::bigint * interval '1 millisecond', m.time, timestamptz 'epoch')) * 1000)::bigint
         AS ms,
       avg(m.value) AS avg, min(m.value) AS min, max(m.value) AS max, sum(m.value) AS sum, count(*) AS count
FROM metrics m JOIN metric_names n ON n.id = m.name_id
WHERE m.device_id = $1::uuid AND ($2::text IS NULL OR n.name = $2::text)
  AND m.time >= timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
  AND m.time < timestamptz 'epoch' + $4::bigint * interval '1 millisecond'
GROUP BY 1, 2
ORDER BY 2, 1
LIMIT $6::int
