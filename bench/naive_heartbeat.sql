-- pgbench script: the naive way to persist a heartbeat, one transaction each:
-- look the device up by id, update its last_seen, commit. Run by
-- scripts/bench.sh with -M prepared against the service's own schema, on a
-- devices table filled with ids md5('bench-' || n)::uuid for n in 1..:ndev.
\set n random(1, :ndev)
BEGIN;
SELECT status, last_seen FROM devices WHERE id = md5('bench-' || :n)::uuid;
UPDATE devices SET last_seen = now() WHERE id = md5('bench-' || :n)::uuid;
COMMIT;
