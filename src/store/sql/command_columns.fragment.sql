-- The columns of a command as the command store reads it (read_command), in the statements that
-- return commands: each writes {{command_columns}} where they go (cmake/embed_sql.cmake puts them in).
id::text AS id, device_id::text AS device_id, name, params::text AS params, state,
       (extract(epoch from created_at) * 1000)::bigint AS created_ms,
       (extract(epoch from expires_at) * 1000)::bigint AS expires_ms,
       (extract(epoch from updated_at) * 1000)::bigint AS updated_ms,
       (extract(epoch from delivered_at) * 1000)::bigint AS delivered_ms,
       timeout_s, result::text AS result, error, seq, request_hash
