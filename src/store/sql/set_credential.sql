-- Sets or rotates a device's credential. $1 device id, $2 salt (hex), $3 password hash (hex), $4 now
-- (epoch ms).
INSERT INTO device_credentials (device_id, salt, password_hash, created_at)
VALUES ($1::uuid, $2, $3, to_timestamp($4::bigint / 1000.0))
ON CONFLICT (device_id) DO UPDATE
  SET salt = excluded.salt, password_hash = excluded.password_hash, rotated_at = excluded.created_at
