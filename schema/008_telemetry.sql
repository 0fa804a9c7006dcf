-- 008: telemetry. Metrics and events of devices, in tables partitioned by day
-- (Postgres native range partitioning on time). The service creates the daily
-- partitions ahead of time and for accepted past times, and drops a partition
-- whole once it is past retention (src/service/telemetry_maintenance.cpp): no
-- partition is created here. Metric names are stored once, in metric_names.
-- metrics_latest keeps the latest value of each metric of each device, so the
-- service's in-memory latest values survive a restart. No foreign key to
-- devices: rows of a deleted device age out with their partitions.
CREATE TABLE metric_names (
    id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL UNIQUE
);

CREATE TABLE metrics (
    device_id  uuid NOT NULL,
    name_id    integer NOT NULL,
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    unit       text,
    tags       jsonb
) PARTITION BY RANGE (time);
-- BRIN: rows arrive roughly in time order, so a few pages per block range.
CREATE INDEX metrics_time_brin ON metrics USING brin (time);
-- The query routes read one device's metric over a span.
CREATE INDEX metrics_device_name_time ON metrics (device_id, name_id, time);

CREATE TABLE events (
    device_id   uuid NOT NULL,
    time        timestamptz NOT NULL,
    event_type  text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('debug', 'info', 'warning', 'error', 'critical')),
    message     text,
    data        jsonb
) PARTITION BY RANGE (time);
CREATE INDEX events_time_brin ON events USING brin (time);
CREATE INDEX events_device_time ON events (device_id, time);

CREATE TABLE metrics_latest (
    device_id  uuid NOT NULL,
    name_id    integer NOT NULL REFERENCES metric_names (id),
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    unit       text,
    PRIMARY KEY (device_id, name_id)
);

-- Partitions by name: <table>_pYYYYMMDD holds [day, day + 1) in UTC. The service
-- calls these; only tables named metrics or events are accepted.
CREATE FUNCTION telemetry_create_partition(parent text, day date) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF parent NOT IN ('metrics', 'events') THEN
    RAISE EXCEPTION 'not a telemetry table: %', parent;
  END IF;
  EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                 parent || '_p' || to_char(day, 'YYYYMMDD'), parent,
                 (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
END $$;

CREATE FUNCTION telemetry_drop_partition(parent text, day date) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF parent NOT IN ('metrics', 'events') THEN
    RAISE EXCEPTION 'not a telemetry table: %', parent;
  END IF;
  EXECUTE format('DROP TABLE IF EXISTS %I', parent || '_p' || to_char(day, 'YYYYMMDD'));
END $$;
