-- One command. $1 command id.
SELECT {{command_columns}}
FROM commands WHERE id = $1::uuid
