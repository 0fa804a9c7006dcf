-- Unblocks a hardware_id. $1 hardware_id. Returns a row when it was blocked.
DELETE FROM blocked_hardware_ids WHERE hardware_id = $1 RETURNING hardware_id
