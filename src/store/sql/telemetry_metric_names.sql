-- Telemetry: the ids of metric names, adding the names not seen before. $1 names text[].
WITH added AS (
  INSERT INTO metric_names (name) SELECT DISTINCT unnest($1::text[]) ON CONFLICT (name) DO NOTHING
  RETURNING id, name)
SELECT id, name FROM added
UNION ALL
SELECT id, name FROM metric_names WHERE name = ANY($1::text[])
