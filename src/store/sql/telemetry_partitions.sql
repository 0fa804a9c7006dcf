-- Telemetry: the partitions of a telemetry table ($1 'metrics' or 'events'), by name.
SELECT c.relname::text AS name
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::text::regclass
