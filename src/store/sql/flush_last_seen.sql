-- Coalesced heartbeats of many devices in one statement: last_seen and presence_session never move
-- back; an attribute is set where its element is not NULL (NULL = unchanged). $1 ids uuid[], $2 ms
-- bigint[] (epoch ms), $3 session bigint[], $4 firmware_version text[], $5 ip_address text[], $6
-- metadata text[] (JSON). Rows are locked in id order first (no deadlock with the other batched
-- statements).
WITH u AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])
                     AS u(id, ms, session, firmware_version, ip_address, metadata)),
locked AS (SELECT d.id FROM devices d JOIN u ON d.id = u.id ORDER BY d.id FOR UPDATE OF d)
UPDATE devices d
SET last_seen = GREATEST(d.last_seen, to_timestamp(u.ms / 1000.0)),
    presence_session = GREATEST(d.presence_session, u.session),
    firmware_version = COALESCE(u.firmware_version, d.firmware_version),
    ip_address = COALESCE(u.ip_address, d.ip_address),
    metadata = COALESCE(u.metadata::jsonb, d.metadata),
    updated_at = CASE WHEN u.firmware_version IS NULL AND u.ip_address IS NULL AND u.metadata IS NULL
                      THEN d.updated_at ELSE GREATEST(d.updated_at, to_timestamp(u.ms / 1000.0)) END
FROM u
WHERE d.id = u.id AND d.id IN (SELECT id FROM locked)
  AND (d.last_seen < to_timestamp(u.ms / 1000.0) OR d.presence_session < u.session
       OR u.firmware_version IS NOT NULL OR u.ip_address IS NOT NULL OR u.metadata IS NOT NULL)
