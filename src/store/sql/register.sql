-- Registers a device (online, reason "registered") with its first history row, unless its hardware_id
-- is taken or blocked (then no row). $1 name, $2 device_type, $3 hardware_id, $4 firmware_version, $5
-- ip_address, $6 location (JSON text), $7 metadata (JSON text), $8 now (epoch ms), $9 offline_after
-- (seconds). Returns the record.
WITH ins AS (
  INSERT INTO devices (name, device_type, hardware_id, firmware_version, ip_address, location, metadata, status,
                       connected, last_seen, status_changed_at, status_reason, offline_after, created_at, updated_at)
  SELECT $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, 'online', true,
         to_timestamp($8::bigint / 1000.0), to_timestamp($8::bigint / 1000.0), 'registered', $9,
         to_timestamp($8::bigint / 1000.0), to_timestamp($8::bigint / 1000.0)
  WHERE NOT EXISTS (SELECT 1 FROM blocked_hardware_ids WHERE hardware_id = $3)
  ON CONFLICT (hardware_id) DO NOTHING
  RETURNING *),
hist AS (
  INSERT INTO device_status_history (device_id, from_status, to_status, reason, at)
  SELECT id, NULL, 'online', 'registered', created_at FROM ins)
SELECT id::text AS id, name, device_type, hardware_id, firmware_version, ip_address, location::text AS location,
       metadata::text AS metadata, status, (extract(epoch from last_seen) * 1000)::bigint AS last_seen_ms,
       (extract(epoch from status_changed_at) * 1000)::bigint AS status_changed_ms,
       (extract(epoch from created_at) * 1000)::bigint AS created_ms,
       (extract(epoch from updated_at) * 1000)::bigint AS updated_ms, offline_after
FROM ins
