-- The command a device's idempotency key belongs to. $1 device id, $2 key.
SELECT {{command_columns}}
FROM commands WHERE device_id = $1::uuid AND idempotency_key = $2
