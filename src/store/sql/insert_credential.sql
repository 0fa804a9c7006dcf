-- Stores a new device's credential (secure mode). $1 device id, $2 salt (hex), $3 password hash (hex),
-- $4 now (epoch ms).
INSERT INTO device_credentials (device_id, salt, password_hash, created_at)
VALUES ($1::uuid, $2, $3, to_timestamp($4::bigint / 1000.0))
