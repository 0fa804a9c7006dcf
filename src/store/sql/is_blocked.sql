-- One row when this hardware_id is blocked from registering. $1 hardware_id.
SELECT 1 AS blocked FROM blocked_hardware_ids WHERE hardware_id = $1
