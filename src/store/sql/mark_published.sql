-- Outbox: the broker acknowledged these retained status messages; published_seq never moves back. $1
-- ids uuid[] (no duplicates), $2 seq bigint[]. Rows already at that seq are neither locked nor updated.
WITH u AS (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS u(id, seq)),
locked AS (SELECT d.id FROM devices d JOIN u ON d.id = u.id WHERE d.published_seq < u.seq ORDER BY d.id FOR UPDATE OF d)
UPDATE devices d SET published_seq = u.seq
FROM u
WHERE d.id = u.id AND d.id IN (SELECT id FROM locked) AND d.published_seq < u.seq
