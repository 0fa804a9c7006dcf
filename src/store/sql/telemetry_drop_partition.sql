-- Telemetry: drops the partition of a table ($1 'metrics' or 'events') for one UTC day ($2 date).
SELECT telemetry_drop_partition($1::text, $2::date)
