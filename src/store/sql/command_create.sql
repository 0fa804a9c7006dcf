-- Stores a new command ('queued') with its first history row, unless the device does not exist (no row)
-- or its idempotency key is taken (no row; command_by_key.sql finds the one that took it). $1 device id,
-- $2 name, $3 params (JSON text), $4 now (epoch ms), $5 expires_in (s), $6 timeout (s), $7 idempotency
-- key (NULL: none), $8 request hash. Returns the command.
WITH ins AS (
  INSERT INTO commands (device_id, name, params, state, created_at, expires_at, timeout_s, updated_at,
                        idempotency_key, request_hash)
  SELECT d.id, $2, $3::jsonb, 'queued', to_timestamp($4::bigint / 1000.0),
         to_timestamp($4::bigint / 1000.0) + make_interval(secs => $5::integer), $6::integer,
         to_timestamp($4::bigint / 1000.0), $7, $8
  FROM devices d WHERE d.id = $1::uuid
  ON CONFLICT (device_id, idempotency_key) DO NOTHING
  RETURNING *),
hist AS (
  INSERT INTO command_history (command_id, from_state, to_state, at) SELECT id, NULL, 'queued', created_at FROM ins)
SELECT {{command_columns}}
FROM ins
