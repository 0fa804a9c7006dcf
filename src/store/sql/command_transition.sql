-- Moves a command from one state to another with a history row, only if it is still in the state the
-- decision was made on (no row otherwise). $1 command id, $2 from, $3 to, $4 now (epoch ms), $5 result
-- (JSON text, NULL keeps), $6 error (NULL keeps), $7 true when this says the device has it (the first
-- time sets delivered_at and the result deadline timeout_at). Returns the command.
WITH upd AS (
  UPDATE commands SET
    state = $3::text,
    updated_at = to_timestamp($4::bigint / 1000.0),
    delivered_at = CASE WHEN $7::boolean AND delivered_at IS NULL THEN to_timestamp($4::bigint / 1000.0)
                        ELSE delivered_at END,
    timeout_at = CASE WHEN $7::boolean AND delivered_at IS NULL
                      THEN to_timestamp($4::bigint / 1000.0) + make_interval(secs => timeout_s)
                      ELSE timeout_at END,
    result = COALESCE($5::jsonb, result),
    error = COALESCE($6::text, error)
  WHERE id = $1::uuid AND state = $2::text
  RETURNING *),
hist AS (
  INSERT INTO command_history (command_id, from_state, to_state, at) SELECT id, $2::text, $3::text, updated_at FROM upd)
SELECT {{command_columns}}
FROM upd
