-- Telemetry: the partition of a table ($1 'metrics' or 'events') for one UTC day ($2 date), if missing.
SELECT telemetry_create_partition($1::text, $2::date)
