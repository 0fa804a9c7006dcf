"""Deadline-driven timeouts and restarts: a silent device goes offline no later
than offline_after + 1 s with a history row; per-device overrides; after the
service restarts every device gets one full window; state survives restarts."""
from __future__ import annotations

import time

from harness import psql_value, wait_until


def register(svc, hardware_id, **extra):
    r = svc.post("/devices/register", json={"name": hardware_id, "device_type": "esp32",
                                            "hardware_id": hardware_id, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_silent_device_is_offline_within_window_plus_one_second(start_service, mqtt):
    """Test whether a device with MAESTRA_OFFLINE_AFTER=2 that stops heartbeating is offline within 3 s."""
    svc = start_service(MAESTRA_OFFLINE_AFTER=2)
    device = register(svc, "silent-1")
    watcher = mqtt(subscribe=f"maestra/devices/{device['id']}/status")
    hb = svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()
    sent = time.monotonic()
    msg = watcher.wait_for(predicate=lambda m: b'"offline"' in m.payload, timeout=5)
    elapsed = time.monotonic() - sent
    assert 1.9 <= elapsed <= 3.0, elapsed
    assert b'"reason":"timeout"' in msg.payload
    assert svc.get(f"/devices/{device['id']}").json()["status"] == "offline"
    row = psql_value(svc.database_url, "SELECT from_status || '>' || to_status || ':' || reason FROM "
                     f"device_status_history WHERE device_id = '{device['id']}' ORDER BY id DESC LIMIT 1")
    assert row == "online>offline:timeout"
    # A heartbeat brings it back.
    assert svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()["status"] == "online"
    assert hb["status"] == "online"


def test_heartbeats_keep_a_device_online(start_service):
    """Test whether heartbeats inside the window keep pushing the deadline back."""
    svc = start_service(MAESTRA_OFFLINE_AFTER=2)
    device = register(svc, "steady-1")
    end = time.monotonic() + 4.5
    while time.monotonic() < end:
        assert svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()["status"] == "online"
        time.sleep(0.7)
    assert psql_value(svc.database_url, "SELECT count(*) FROM device_status_history "
                      f"WHERE device_id = '{device['id']}' AND to_status = 'offline'") == "0"


def test_per_device_offline_after_override(start_service):
    """Test whether a per-device offline_after (PATCH) overrides the service default."""
    svc = start_service(MAESTRA_OFFLINE_AFTER=300)
    fast = register(svc, "override-1")
    slow = register(svc, "override-2")
    assert svc.patch(f"/devices/{fast['id']}", json={"offline_after": 1}).json()["offline_after"] == 1
    wait_until(lambda: svc.get(f"/devices/{fast['id']}").json()["status"] == "offline", timeout=3)
    assert svc.get(f"/devices/{slow['id']}").json()["status"] == "online"


def test_registration_offline_after_is_honoured(start_service):
    """Test whether offline_after given at registration applies."""
    svc = start_service(MAESTRA_OFFLINE_AFTER=300)
    device = register(svc, "reg-override", offline_after=1)
    wait_until(lambda: svc.get(f"/devices/{device['id']}").json()["status"] == "offline", timeout=3)


def test_restart_gives_every_device_a_full_window(start_service):
    """Test whether, after a restart, devices silent during the downtime get one full window (reason restart)."""
    svc = start_service(MAESTRA_OFFLINE_AFTER=3)
    device = register(svc, "restart-1")
    svc.stop()
    time.sleep(3.5)  # longer than the window: without grace it would be offline at once
    svc.start()
    restarted = time.monotonic()
    assert svc.get(f"/devices/{device['id']}").json()["status"] == "online"
    wait_until(lambda: svc.get(f"/devices/{device['id']}").json()["status"] == "offline", timeout=6)
    assert time.monotonic() - restarted >= 2.5
    assert psql_value(svc.database_url, "SELECT reason FROM device_status_history WHERE "
                      f"device_id = '{device['id']}' ORDER BY id DESC LIMIT 1") == "restart"


def test_state_survives_restart(start_service):
    """Test whether registrations, maintenance and last_seen survive a clean restart (last_seen flushed)."""
    svc = start_service()
    device = register(svc, "survive-1")
    svc.patch(f"/devices/{device['id']}", json={"status": "maintenance"})
    hb = svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()
    svc.restart()
    record = svc.get(f"/devices/{device['id']}").json()
    assert record["status"] == "maintenance"
    assert record["last_seen"] == hb["last_seen"]


def test_sigterm_stops_cleanly(start_service):
    """Test whether SIGTERM ends the service with status 0 and a 'stopped' log line."""
    svc = start_service()
    assert svc.stop() == 0
    assert "shutting_down" in svc.log_text() and "stopped" in svc.log_text()
