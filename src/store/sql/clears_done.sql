-- The retained topics of these deleted devices are cleared. $1 ids uuid[].
DELETE FROM retained_clears WHERE device_id = ANY($1::uuid[])
