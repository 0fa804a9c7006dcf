"""HTTP shim against the device-registration guide: every request, response and
client snippet of the guide works unchanged against a real fleet-manager with a
real Postgres and Mosquitto."""
from __future__ import annotations

import re
import subprocess
import time
import uuid

import requests

from harness import REPO, psql_value, wait_until

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

GUIDE_BODY = {
    "name": "Arduino Sensor 1",
    "device_type": "arduino",
    "hardware_id": "AA:BB:CC:DD:EE:FF",
    "firmware_version": "1.0.0",
    "ip_address": "192.168.1.100",
    "location": {"building": "Main", "floor": 1, "room": "Lab"},
    "metadata": {"serial_number": "ARD-12345", "manufacturer": "Arduino", "model": "Uno R3"},
}


def test_register_returns_the_guides_record(start_service):
    """Test whether registration answers 201 with the guide's fields, status online and RFC 3339 times."""
    svc = start_service()
    r = svc.post("/devices/register", json=GUIDE_BODY)
    assert r.status_code == 201, r.text
    body = r.json()
    uuid.UUID(body["id"])
    for key in ("name", "device_type", "hardware_id", "firmware_version", "ip_address", "location", "metadata"):
        assert body[key] == GUIDE_BODY[key]
    assert body["status"] == "online"
    assert RFC3339_MS.match(body["created_at"]) and RFC3339_MS.match(body["last_seen"])
    assert r.headers["Content-Type"].startswith("application/json")
    assert psql_value(svc.database_url, f"SELECT status FROM devices WHERE id = '{body['id']}'") == "online"
    assert psql_value(svc.database_url,
                      f"SELECT reason FROM device_status_history WHERE device_id = '{body['id']}'") == "registered"


def test_heartbeat_response_and_last_seen(start_service):
    """Test whether a heartbeat answers device_id, status and a fresh last_seen."""
    svc = start_service()
    device = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "hb-1"}).json()
    time.sleep(0.02)
    r = svc.post("/devices/heartbeat", json={"device_id": device["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device_id"] == device["id"] and body["status"] == "online"
    assert RFC3339_MS.match(body["last_seen"]) and body["last_seen"] > device["last_seen"]
    assert "warning" not in body
    assert svc.get(f"/devices/{device['id']}").json()["last_seen"] == body["last_seen"]


def test_frequent_heartbeats_get_the_guides_warning(start_service):
    """Test whether heartbeats closer than 10 s carry a warning and are logged once."""
    svc = start_service()
    device = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "hb-fast"}).json()
    first = svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()
    assert "warning" not in first
    for _ in range(3):
        second = svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()
        assert "10 seconds" in second["warning"]
    wait_until(lambda: "heartbeat_too_frequent" in svc.log_text(), timeout=5)
    assert svc.log_text().count("heartbeat_too_frequent") == 1


def test_heartbeat_by_hardware_id_for_older_clients(start_service):
    """Test whether the heartbeat accepts {"hardware_id": ...} instead of device_id."""
    svc = start_service()
    device = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "legacy-1"}).json()
    r = svc.post("/devices/heartbeat", json={"hardware_id": "legacy-1"})
    assert r.status_code == 200 and r.json()["device_id"] == device["id"]
    assert svc.post("/devices/heartbeat", json={"hardware_id": "nobody"}).status_code == 404


def test_duplicate_hardware_id_gives_409_with_existing_id(start_service):
    """Test whether a second registration of a hardware_id answers 409 with the existing id."""
    svc = start_service()
    first = svc.post("/devices/register", json=GUIDE_BODY).json()
    r = svc.post("/devices/register", json={**GUIDE_BODY, "name": "another"})
    assert r.status_code == 409
    assert r.json()["error"] == "conflict" and r.json()["id"] == first["id"]
    assert psql_value(svc.database_url, "SELECT count(*) FROM devices") == "1"


def test_guide_python_client_runs_unchanged(start_service):
    """Test whether the guide's Python client registers, heartbeats, handles 409 and shuts down gracefully."""
    svc = start_service()
    script = REPO / "examples" / "python" / "guide_client.py"
    first = subprocess.run(["/usr/bin/python3", str(script), svc.url, "rpi-001"],
                           capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert "Registered as" in first.stdout
    second = subprocess.run(["/usr/bin/python3", str(script), svc.url, "rpi-001"],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 0, second.stderr
    assert "Using existing device" in second.stdout
    devices = svc.get("/devices").json()
    assert isinstance(devices, list) and len(devices) == 1
    assert devices[0]["hardware_id"] == "rpi-001" and devices[0]["status"] == "maintenance"


def test_graceful_shutdown_patch_and_back(start_service):
    """Test whether maintenance sticks while heartbeats refresh last_seen, and clearing it recomputes status."""
    svc = start_service()
    device = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "maint-1"}).json()
    r = svc.patch(f"/devices/{device['id']}", json={"status": "maintenance"})
    assert r.status_code == 200 and r.json()["status"] == "maintenance"
    hb = svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()
    assert hb["status"] == "maintenance"
    assert svc.get(f"/devices/{device['id']}").json()["last_seen"] == hb["last_seen"]
    back = svc.patch(f"/devices/{device['id']}", json={"status": "online"}).json()
    assert back["status"] == "online"
    reasons = psql_value(svc.database_url, "SELECT string_agg(to_status || ':' || reason, ',' ORDER BY id) "
                         f"FROM device_status_history WHERE device_id = '{device['id']}'")
    assert reasons == "online:registered,maintenance:admin,online:admin"


def test_error_heartbeat_sets_and_plain_clears(start_service):
    """Test whether a heartbeat with status error sets error and a plain one clears it."""
    svc = start_service()
    device = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "err-1"}).json()
    assert svc.post("/devices/heartbeat", json={"device_id": device["id"], "status": "error"}).json()["status"] == "error"
    assert svc.get(f"/devices/{device['id']}").json()["status"] == "error"
    assert svc.post("/devices/heartbeat", json={"device_id": device["id"]}).json()["status"] == "online"


def test_heartbeat_attributes_update_the_record(start_service):
    """Test whether firmware_version, ip_address and metadata in a heartbeat reach the record."""
    svc = start_service()
    device = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "attr-1"}).json()
    svc.post("/devices/heartbeat", json={"device_id": device["id"], "firmware_version": "2.0.0",
                                         "ip_address": "fe80::1", "metadata": {"uptime": 5}})
    record = wait_until(lambda: (lambda d: d if d["firmware_version"] == "2.0.0" else None)(
        svc.get(f"/devices/{device['id']}").json()), timeout=5)
    assert record["ip_address"] == "fe80::1" and record["metadata"] == {"uptime": 5}


def test_heartbeat_attributes_with_hostile_text_are_stored_exactly(start_service):
    """Test whether heartbeat attributes holding quotes, backslashes, braces, commas and the word NULL are
    stored exactly as sent (they travel in one batched statement with other devices' rows), and whether a
    device's attributes never land on another device flushed with it."""
    svc = start_service()
    a = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "hostile-a"}).json()
    b = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "hostile-b", "firmware_version": "b-1"}).json()
    firmware = 'v1 "beta" \\ {x,y} \'; DROP TABLE devices; --'
    metadata = {"note": 'a"b\\c,{}', "NULL": None, "nested": {"list": [1, "two", {"3": "}"}]}, "emoji": "\u2603"}
    svc.post("/devices/heartbeat", json={"device_id": a["id"], "firmware_version": firmware, "metadata": metadata})
    svc.post("/devices/heartbeat", json={"device_id": b["id"], "firmware_version": "NULL"})
    got_a = wait_until(lambda: (lambda d: d if d["firmware_version"] == firmware else None)(
        svc.get(f"/devices/{a['id']}").json()), timeout=5)
    assert got_a["metadata"] == metadata
    got_b = wait_until(lambda: (lambda d: d if d["firmware_version"] == "NULL" else None)(
        svc.get(f"/devices/{b['id']}").json()), timeout=5)
    assert got_b["metadata"] == GUIDE_BODY.get("metadata")


def test_list_filters_and_paging(start_service):
    """Test whether GET /devices filters by status, device_type and hardware_id, and pages with limit/offset."""
    svc = start_service()
    ids = []
    for i in range(7):
        body = {**GUIDE_BODY, "hardware_id": f"list-{i}", "device_type": "esp32" if i % 2 else "arduino"}
        ids.append(svc.post("/devices/register", json=body).json()["id"])
    svc.patch(f"/devices/{ids[0]}", json={"status": "maintenance"})
    everything = svc.get("/devices").json()
    assert [d["id"] for d in everything] == ids
    assert [d["id"] for d in svc.get("/devices", params={"limit": 3, "offset": 2}).json()] == ids[2:5]
    assert {d["id"] for d in svc.get("/devices", params={"device_type": "esp32"}).json()} == {ids[1], ids[3], ids[5]}
    assert [d["id"] for d in svc.get("/devices", params={"status": "maintenance"}).json()] == [ids[0]]
    assert [d["id"] for d in svc.get("/devices", params={"hardware_id": "list-4"}).json()] == [ids[4]]
    assert svc.get("/devices", params={"limit": 0}).json() == []


def test_list_by_status_in_order_for_rare_and_common_statuses(start_service):
    """Test whether GET /devices?status= lists exactly the devices with that status, in creation order with
    limit/offset, both for a status few devices have (looked up by id from the registry) and for a common one
    (read in list order), and follows a status change at once."""
    svc = start_service()
    # 2 of 24 in maintenance: few enough that the service looks them up by id
    # (core::list_by_candidates: 10 x 2 < 24 rows read in order); 22 online: read in order.
    ids = [svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": f"by-status-{i}"}).json()["id"]
           for i in range(24)]
    rare = [ids[3], ids[17]]
    for device_id in reversed(rare):  # changed out of creation order: the listing still follows creation
        assert svc.patch(f"/devices/{device_id}", json={"status": "maintenance"}).status_code == 200
    common = [i for i in ids if i not in rare]

    def listed(**params):
        r = svc.get("/devices", params=params)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()]

    assert listed(status="maintenance") == rare
    assert listed(status="maintenance", limit=1, offset=1) == rare[1:2]
    assert listed(status="maintenance", offset=2) == []
    assert listed(status="online") == common
    assert listed(status="online", limit=5, offset=3) == common[3:8]
    assert listed(status="offline") == []
    assert listed(status="maintenance", device_type=GUIDE_BODY["device_type"], limit=2) == rare[:2]
    assert all(d["status"] == "maintenance" for d in svc.get("/devices", params={"status": "maintenance"}).json())
    assert svc.patch(f"/devices/{rare[1]}", json={"status": "online"}).status_code == 200
    assert listed(status="maintenance") == [rare[0]]
    assert listed(status="online") == [i for i in ids if i != rare[0]]


def test_delete_then_gone(start_service):
    """Test whether DELETE removes the device and its history, and a second DELETE is 404."""
    svc = start_service()
    device = svc.post("/devices/register", json={**GUIDE_BODY, "hardware_id": "del-1"}).json()
    assert svc.delete(f"/devices/{device['id']}").status_code == 204
    assert svc.get(f"/devices/{device['id']}").status_code == 404
    assert svc.delete(f"/devices/{device['id']}").status_code == 404
    assert svc.post("/devices/heartbeat", json={"device_id": device["id"]}).status_code == 404
    assert psql_value(svc.database_url, "SELECT count(*) FROM device_status_history") == "0"


def test_health_check_like_the_guide(start_service):
    """Test whether `curl http://localhost:8080/health` answers 200 with the database and broker state."""
    svc = start_service()
    out = subprocess.run(["curl", "-s", "-f", f"{svc.url}/health"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    body = requests.get(f"{svc.url}/health", timeout=5).json()
    assert body["database"] == "ok"
    wait_until(lambda: svc.get("/health").json()["mqtt"] == "connected", timeout=10)
