-- Telemetry: this transaction (a batch of MQTT telemetry only) commits without waiting for
-- the WAL flush (SET LOCAL synchronous_commit = off; set_config, since SET cannot be prepared).
SELECT set_config('synchronous_commit', 'off', true)
