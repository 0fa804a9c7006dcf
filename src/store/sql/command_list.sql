-- A device's commands, newest first. $1 device id, $2 state (NULL: any), $3 limit, $4 offset.
SELECT {{command_columns}}
FROM commands WHERE device_id = $1::uuid AND ($2::text IS NULL OR state = $2::text)
ORDER BY seq DESC LIMIT $3 OFFSET $4
