-- State changes of many devices, the owner's batches and PATCH alike; a row with a reason is a
-- transition (status_changed_at, status_reason, status_seq + 1, a history row). $1 ids uuid[], $2 connected,
-- $3 reported_error, $4 maintenance bool[], $5 status text[], $6 last_seen_ms bigint[], $7 reason text[]
-- (NULL: none), $8 from_status text[], $9 at_ms bigint[] (transition or update time), $10 offline_after int[],
-- $11 ord int[], $12 session bigint[]. Returns the stored transitions in batch (ord) order.
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::bool[], $5::text[], $6::bigint[],
                       $7::text[], $8::text[], $9::bigint[], $10::int[], $11::int[], $12::bigint[])
           AS u(id, connected, reported_error, maintenance, status, last_seen_ms, reason, from_status, at_ms,
                offline_after, ord, session)),
locked AS (SELECT d.id FROM devices d JOIN input u ON d.id = u.id ORDER BY d.id FOR UPDATE OF d),
upd AS (
  UPDATE devices d
  SET connected = u.connected, reported_error = u.reported_error, maintenance = u.maintenance, status = u.status,
      offline_after = u.offline_after,
      presence_session = GREATEST(d.presence_session, u.session),
      last_seen = GREATEST(d.last_seen, to_timestamp(u.last_seen_ms / 1000.0)),
      status_changed_at = CASE WHEN u.reason IS NULL THEN d.status_changed_at ELSE to_timestamp(u.at_ms / 1000.0) END,
      status_reason = COALESCE(u.reason, d.status_reason),
      status_seq = d.status_seq + CASE WHEN u.reason IS NULL THEN 0 ELSE 1 END,
      updated_at = to_timestamp(u.at_ms / 1000.0)
  FROM input u
  WHERE d.id = u.id AND d.id IN (SELECT id FROM locked)
  RETURNING d.id, d.name, d.device_type, d.hardware_id, d.status,
            (extract(epoch from d.last_seen) * 1000)::bigint AS last_seen_ms,
            (extract(epoch from d.status_changed_at) * 1000)::bigint AS status_changed_ms, d.status_reason,
            d.status_seq, u.reason IS NOT NULL AS transitioned, u.from_status, u.ord, d.status_changed_at),
hist AS (
  INSERT INTO device_status_history (device_id, from_status, to_status, reason, at)
  SELECT id, from_status, status, status_reason, status_changed_at FROM upd WHERE transitioned)
SELECT id::text AS id, name, device_type, hardware_id, status, last_seen_ms, status_changed_ms, status_reason,
       status_seq
FROM upd WHERE transitioned ORDER BY ord
