-- Telemetry: one device's points in [from, to), newest first. $1 device uuid, $2 name (NULL: every
-- metric), $3 from and $4 to (epoch ms), $5 limit.
SELECT n.name, (extract(epoch FROM m.time) * 1000)::bigint AS ms, m.value, m.unit, m.tags::text AS tags
FROM metrics m JOIN metric_names n ON n.id = m.name_id
WHERE m.device_id = $1::uuid AND ($2::text IS NULL OR n.name = $2::text)
  AND m.time >= timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
  AND m.time < timestamptz 'epoch' + $4::bigint * interval '1 millisecond'
ORDER BY m.time DESC, n.name
LIMIT $5::int
