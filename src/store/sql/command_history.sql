-- A command's state changes, oldest first. $1 command id.
SELECT from_state, to_state, (extract(epoch from at) * 1000)::bigint AS at_ms
FROM command_history WHERE command_id = $1::uuid ORDER BY id
