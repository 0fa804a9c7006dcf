-- A deleted device's history (no foreign key cascades it: schema/006). $1 id. Run after delete.sql in
-- the same transaction, as its own statement: it sees history rows stored until the device's row was
-- locked by the delete, and none can be added after.
DELETE FROM device_status_history WHERE device_id = $1::uuid
