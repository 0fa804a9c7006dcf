-- Telemetry: one device's events in [from, to), newest first. $1 device uuid, $2 from and $3 to
-- (epoch ms), $4 event_type (NULL: any), $5 severity (NULL: any), $6 limit.
SELECT (extract(epoch FROM time) * 1000)::bigint AS ms, event_type, severity, message, data::text AS data
FROM events
WHERE device_id = $1::uuid
  AND time >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
  AND time < timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
  AND ($4::text IS NULL OR event_type = $4::text) AND ($5::text IS NULL OR severity = $5::text)
ORDER BY time DESC
LIMIT $6::int
