-- Whether a device exists. $1 device id.
SELECT 1 FROM devices WHERE id = $1::uuid
