"""Operating the service: configuration errors fail fast with one line, --help
lists every variable, migrations are applied once under a lock even when two
instances start together, one instance per database is active while another
stands by and takes over, and a database outage gives 503 and heals itself."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import requests

from harness import REPO, PostgresCluster, fleet_manager_binary, psql, psql_value, wait_until

ENV_NAMES = ["MAESTRA_HTTP_PORT", "MAESTRA_DATABASE_URL", "MAESTRA_MQTT_URL", "MAESTRA_OFFLINE_AFTER",
             "MAESTRA_TOPIC_PREFIX"]


def run_binary(*args, env=None):
    return subprocess.run([str(fleet_manager_binary()), *args], capture_output=True, text=True, timeout=20,
                          env=env or {"PATH": "/usr/bin:/bin"})


def test_help_lists_every_setting_with_defaults():
    """Test whether --help lists every configuration variable and its default."""
    out = run_binary("--help")
    assert out.returncode == 0
    for name in ENV_NAMES:
        assert name in out.stdout
    assert "default: 8080" in out.stdout and "default: 300" in out.stdout


def test_bad_configuration_fails_with_one_line():
    """Test whether each bad setting stops start-up with exit 2 and one clear line naming it."""
    cases = {"MAESTRA_OFFLINE_AFTER": "soon", "MAESTRA_HTTP_PORT": "70000", "MAESTRA_MQTT_URL": "localhost",
             "MAESTRA_TOPIC_PREFIX": "a/#"}
    for name, value in cases.items():
        out = run_binary(env={"PATH": "/usr/bin:/bin", name: value})
        assert out.returncode == 2, (name, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], out.stderr
    out = run_binary("--offline-after", "0")
    assert out.returncode == 2 and "MAESTRA_OFFLINE_AFTER" in out.stderr
    out = run_binary("--no-such-flag")
    assert out.returncode == 2 and "--no-such-flag" in out.stderr


def test_two_instances_migrate_one_database_without_racing(start_service, new_database):
    """Test whether two instances starting together on a fresh database migrate it once: one becomes
    active, the other waits as a standby and takes over when the active one stops."""
    url = new_database()
    services = []
    errors = []

    def start():
        try:
            services.append(start_service(database_url=url, wait=False))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(services) == 2

    def healthy(svc):
        try:
            return svc.get("/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    active = wait_until(lambda: next((s for s in services if healthy(s)), None), timeout=20)
    standby = services[1] if active is services[0] else services[0]
    wait_until(lambda: "standby" in standby.log_text(), timeout=10)
    assert standby.is_running() and not healthy(standby)
    migrations = sorted(p.name for p in (REPO / "schema").glob("*.sql"))
    applied = [row[0] for row in psql(url, "SELECT name FROM schema_migrations ORDER BY name")]
    assert applied == migrations

    assert active.stop() == 0
    standby.wait_healthy(timeout=10)
    assert "standby_ended" in standby.log_text()
    assert [row[0] for row in psql(url, "SELECT name FROM schema_migrations ORDER BY name")] == migrations


def test_standby_takes_over_the_fleet_when_the_active_instance_crashes(start_service, new_database):
    """Test whether a standby takes over within seconds of the active instance's crash and serves the same fleet."""
    url = new_database()
    active = start_service(database_url=url)
    device = active.post("/devices/register", json={"name": "ha-1", "device_type": "esp32",
                                                    "hardware_id": "ha-1"}).json()
    standby = start_service(database_url=url, wait=False)
    wait_until(lambda: "standby" in standby.log_text(), timeout=10)
    # A live standby answers on its port, so monitors can tell it from a dead process.
    health = wait_until(lambda: [standby.get("/health", timeout=2)], timeout=10,
                        ignore=(requests.ConnectionError,))[0]  # a list: a 503 Response is falsy
    assert health.status_code == 503 and health.json()["status"] == "standby"
    refused = standby.get(f"/devices/{device['id']}")
    assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
    active.kill()
    killed = time.monotonic()
    standby.wait_healthy(timeout=10)
    assert time.monotonic() - killed < 5
    assert standby.get(f"/devices/{device['id']}").json()["hardware_id"] == "ha-1"
    assert standby.post("/devices/heartbeat", json={"device_id": device["id"]}).json()["status"] == "online"


def test_an_instance_that_lost_its_lock_to_another_steps_down(start_service, new_database):
    """Test whether an active instance whose lock session ended while a standby took over exits 1 instead of
    running the same fleet twice."""
    url = new_database()
    first = start_service(database_url=url)
    second = start_service(database_url=url, wait=False)
    wait_until(lambda: "standby" in second.log_text(), timeout=10)
    # Freeze the active one, end its lock session, let the standby take over, then let it run again.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        ended = psql_value(url, "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        assert ended == "1"
        second.wait_healthy(timeout=10)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    wait_until(lambda: not first.is_running(), timeout=15)
    assert first.returncode == 1
    assert "active_instance_lock_lost" in first.log_text()
    assert second.get("/health").status_code == 200


def test_database_outage_gives_503_and_recovers(start_service, tmp_path):
    """Test whether a database outage gives 503 from /health and writes, and the service heals by itself."""
    cluster = PostgresCluster().start()
    try:
        url = cluster.new_database()
        svc = start_service(database_url=url)
        device = svc.post("/devices/register", json={"name": "n", "device_type": "t", "hardware_id": "out-1"}).json()
        cluster.stop()
        assert svc.get("/health").status_code == 503
        r = svc.post("/devices/register", json={"name": "n", "device_type": "t", "hardware_id": "out-2"})
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
        r = svc.patch(f"/devices/{device['id']}", json={"status": "maintenance"})
        assert r.status_code == 503
        assert svc.is_running()
        cluster.start()
        wait_until(lambda: svc.get("/health").status_code == 200, timeout=20)
        r = svc.post("/devices/register", json={"name": "n", "device_type": "t", "hardware_id": "out-2"})
        assert r.status_code == 201, r.text
        assert svc.get(f"/devices/{device['id']}").json()["status"] == "online"
        assert svc.patch(f"/devices/{device['id']}", json={"status": "maintenance"}).status_code == 200
    finally:
        cluster.cleanup()


def test_metrics_are_exposed(start_service):
    """Test whether GET /metrics answers Prometheus text with the documented families."""
    svc = start_service()
    svc.post("/devices/register", json={"name": "n", "device_type": "t", "hardware_id": "m-1"})
    text = svc.get("/metrics").text
    for family in ("maestra_devices{status=\"online\"} 1", "maestra_registrations_total{transport=\"http\"} 1",
                   "maestra_mqtt_connected", "maestra_rejected_total", "maestra_status_transitions_total",
                   "maestra_last_seen_flushes_total", "maestra_database_errors_total"):
        assert family in text, family
    assert requests.get(f"{svc.url}/metrics", timeout=5).headers["Content-Type"].startswith("text/plain")


def test_status_changes_are_logged_and_a_storm_is_summarised(start_service):
    """Test whether each status change is logged (device, from, to, reason) and a burst past 20 a second gives a count, not a line each."""
    svc = start_service()
    ids = [svc.post("/devices/register", json={"name": f"l{i}", "device_type": "t", "hardware_id": f"log-{i}"}).json()["id"]
           for i in range(30)]
    for device_id in ids:
        assert svc.patch(f"/devices/{device_id}", json={"status": "maintenance"}).status_code == 200
    line = f"status_changed device={ids[0]} from=online to=maintenance reason=admin"
    wait_until(lambda: line in svc.log_text(), timeout=5, message=lambda: svc.log_tail(20))

    def summarised():
        counts = [int(m) for m in re.findall(r"status_changes_not_logged count=(\d+)", svc.log_text())]
        return sum(counts)
    wait_until(lambda: summarised() > 0, timeout=5, message=lambda: svc.log_tail(20))
    logged = svc.log_text().count("info status_changed ")
    assert logged + summarised() == 30, (logged, summarised())
    assert logged < 30
