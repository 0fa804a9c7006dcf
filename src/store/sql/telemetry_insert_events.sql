-- Telemetry: a batch of events. $1 device uuid[], $2 time bigint[] (epoch ms), $3 event_type text[],
-- $4 severity text[], $5 message text[], $6 data text[] (JSON objects or NULL).
INSERT INTO events (device_id, time, event_type, severity, message, data)
SELECT d, timestamptz 'epoch' + ms * interval '1 millisecond', ty, s, m, x::jsonb
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS e(d, ms, ty, s, m, x)
