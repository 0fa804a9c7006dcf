-- A device's stored credential. $1 device id.
SELECT salt, password_hash FROM device_credentials WHERE device_id = $1::uuid
