-- Stores one new command ('queued') for each device of a fan-out, with their first history rows, in one
-- statement (one commit for the whole fan-out). Devices that do not exist (deleted meanwhile) are skipped.
-- Rows are inserted in device id order (a device's own commands in the array's order): each insert's
-- foreign key check locks its device row (FOR KEY SHARE), and the device store's batches lock device rows
-- in id order too (FOR UPDATE), so neither waits on the other in a cycle (a fan-out in the array's order
-- deadlocked with the last_seen flushes). No idempotency key: a fan-out with a key goes one device at a
-- time (command_create.sql). $1 device ids (uuid[]), $2 name, $3 params (JSON text), $4 now (epoch ms),
-- $5 expires_in (s), $6 timeout (s), $7 request hash. Returns the commands in creation order (the caller puts them back in the array's).
WITH ins AS (
  INSERT INTO commands (device_id, name, params, state, created_at, expires_at, timeout_s, updated_at,
                        request_hash)
  SELECT d.id, $2, $3::jsonb, 'queued', to_timestamp($4::bigint / 1000.0),
         to_timestamp($4::bigint / 1000.0) + make_interval(secs => $5::integer), $6::integer,
         to_timestamp($4::bigint / 1000.0), $7
  FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n) JOIN devices d ON d.id = u.id
  ORDER BY u.id, u.n
  RETURNING *),
hist AS (
  INSERT INTO command_history (command_id, from_state, to_state, at)
  SELECT id, NULL, 'queued', created_at FROM ins ORDER BY seq)
SELECT {{command_columns}}
FROM ins ORDER BY seq
