-- The id of the device with this hardware_id (registration's conflict answer). $1 hardware_id.
SELECT id::text AS id FROM devices WHERE hardware_id = $1
