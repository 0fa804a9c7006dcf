-- Moves many commands, each from the state its decision was made on to another, with a history row each,
-- in one statement (the broker's acks and the devices' replies of one worker cycle). A command no longer in
-- its `from` state is left as it is (no row). At most one row per command id (the caller's rule).
-- $1 ids uuid[], $2 from text[], $3 to text[], $4 now (epoch ms), $5 results (JSON text, NULL keeps) text[],
-- $6 errors (NULL keeps) text[], $7 bool[]: true when this says the device has it (the first time sets
-- delivered_at and the result deadline timeout_at). Returns the moved commands.
-- The rows are locked in id order first (`locked`): batches of several workers and the sweep touch
-- overlapping commands and never wait on each other in a cycle.
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $5::text[], $6::text[], $7::boolean[])
           AS u(id, from_state, to_state, result, error, marks_delivery)),
locked AS (SELECT c.id FROM commands c JOIN input u ON c.id = u.id ORDER BY c.id FOR UPDATE OF c),
upd AS (
  UPDATE commands c SET
    state = u.to_state,
    updated_at = to_timestamp($4::bigint / 1000.0),
    delivered_at = CASE WHEN u.marks_delivery AND c.delivered_at IS NULL THEN to_timestamp($4::bigint / 1000.0)
                        ELSE c.delivered_at END,
    timeout_at = CASE WHEN u.marks_delivery AND c.delivered_at IS NULL
                      THEN to_timestamp($4::bigint / 1000.0) + make_interval(secs => c.timeout_s)
                      ELSE c.timeout_at END,
    result = COALESCE(u.result::jsonb, c.result),
    error = COALESCE(u.error, c.error)
  FROM input u
  WHERE c.id = u.id AND c.id IN (SELECT id FROM locked) AND c.state = u.from_state
  RETURNING c.*, u.from_state AS moved_from),
hist AS (
  INSERT INTO command_history (command_id, from_state, to_state, at)
  SELECT id, moved_from, state, updated_at FROM upd ORDER BY seq)
SELECT {{command_columns}}
FROM upd ORDER BY seq
