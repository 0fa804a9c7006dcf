"""Bad input over HTTP gets a clear JSON error with the right status, and writes
nothing: malformed JSON, missing and wrong-typed fields, over-long strings,
control characters, non-object location/metadata, invalid IPs and UUIDs,
unknown devices and routes, wrong methods and oversized bodies."""
from __future__ import annotations

import concurrent.futures
import json

import pytest
import requests

from harness import psql_value

VALID = {"name": "Sensor", "device_type": "esp32", "hardware_id": "hw-valid"}


@pytest.fixture(scope="module")
def svc(request, postgres, mosquitto, tmp_path_factory):
    from harness import ServiceFactory
    factory = ServiceFactory(postgres, mosquitto, tmp_path_factory.mktemp("bad-input"))
    service = factory()
    service.device = service.post("/devices/register", json={**VALID, "hardware_id": "existing"}).json()
    yield service
    factory.close()


def snapshot(svc):
    return (psql_value(svc.database_url, "SELECT count(*) FROM devices"),
            psql_value(svc.database_url, "SELECT count(*) FROM device_status_history"),
            psql_value(svc.database_url, "SELECT max(updated_at)::text FROM devices"))


REGISTRATION_CASES = [
    ("not json", b"{name:", 400, None),
    ("empty body", b"", 400, None),
    ("array", b"[1,2]", 400, None),
    ("string", b'"hello"', 400, None),
    ("too deep", b'{"name":' + b"[" * 40 + b"]" * 40 + b"}", 400, None),
    ("invalid utf-8", b'{"name":"\xff\xfe","device_type":"x","hardware_id":"y"}', 400, None),
    ("missing name", {"device_type": "esp32", "hardware_id": "a"}, 422, "name"),
    ("missing device_type", {"name": "n", "hardware_id": "a"}, 422, "device_type"),
    ("missing hardware_id", {"name": "n", "device_type": "esp32"}, 422, "hardware_id"),
    ("name not string", {**VALID, "name": 42}, 422, "name"),
    ("name blank", {**VALID, "name": "   "}, 422, "name"),
    ("name too long", {**VALID, "name": "x" * 201}, 422, "name"),
    ("hardware_id too long", {**VALID, "hardware_id": "h" * 129}, 422, "hardware_id"),
    ("control characters", {**VALID, "name": "bad\u0007name"}, 422, "name"),
    ("newline in type", {**VALID, "device_type": "esp\n32"}, 422, "device_type"),
    ("location array", {**VALID, "location": [1, 2]}, 422, "location"),
    ("metadata string", {**VALID, "metadata": "text"}, 422, "metadata"),
    ("NUL in metadata", {**VALID, "metadata": {"k": "a\u0000b"}}, 422, "metadata"),
    ("bad ip", {**VALID, "ip_address": "999.1.1.1"}, 422, "ip_address"),
    ("ip wrong type", {**VALID, "ip_address": 1234}, 422, "ip_address"),
    ("firmware object", {**VALID, "firmware_version": {"v": 1}}, 422, "firmware_version"),
    ("offline_after zero", {**VALID, "offline_after": 0}, 422, "offline_after"),
]


@pytest.mark.parametrize("label,body,status,field", [c for c in REGISTRATION_CASES if c[1] is not None],
                         ids=[c[0] for c in REGISTRATION_CASES if c[1] is not None])
def test_bad_registration_is_rejected_and_writes_nothing(svc, label, body, status, field):
    """Test whether each malformed or invalid registration gets its status and writes nothing."""
    before = snapshot(svc)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = svc.post("/devices/register", data=data)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["error"] in ("malformed_json", "invalid_field") and error["detail"]
    if field:
        assert error["field"] == field
    assert snapshot(svc) == before


def test_hostile_strings_are_stored_verbatim(svc):
    """Test whether SQL- and HTML-looking strings are data, stored and returned as sent."""
    hostile = {"name": "x'); DROP TABLE devices; --", "device_type": "<script>alert(1)</script>",
               "hardware_id": "hostile-1", "metadata": {"'\"\\": "\u00e9\u4e2d\U0001F600"}}
    r = svc.post("/devices/register", json=hostile)
    assert r.status_code == 201, r.text
    again = svc.get(f"/devices/{r.json()['id']}").json()
    assert again["name"] == hostile["name"] and again["metadata"] == hostile["metadata"]
    assert psql_value(svc.database_url, "SELECT count(*) FROM devices WHERE hardware_id = 'hostile-1'") == "1"


def test_body_over_64_kib_is_413(svc):
    """Test whether a body over 64 KiB answers 413 with a JSON error and writes nothing."""
    before = snapshot(svc)
    big = json.dumps({**VALID, "hardware_id": "big", "metadata": {"blob": "x" * 70000}})
    r = svc.post("/devices/register", data=big)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"
    assert snapshot(svc) == before


def test_body_of_exactly_64_kib_is_accepted(svc):
    """Test whether the 64 KiB limit is inclusive (a body of exactly 65536 bytes is read)."""
    body = {**VALID, "hardware_id": "exact", "metadata": {"blob": ""}}
    pad = 65536 - len(json.dumps(body))
    body["metadata"]["blob"] = "x" * pad
    data = json.dumps(body)
    assert len(data) == 65536
    assert svc.post("/devices/register", data=data).status_code == 201


HEARTBEAT_CASES = [
    ("no id", {}, 422, "device_id"),
    ("bad uuid", {"device_id": "not-a-uuid"}, 422, "device_id"),
    ("uuid wrong type", {"device_id": 12}, 422, "device_id"),
    ("bad status", {"device_id": "00000000-0000-4000-8000-000000000000", "status": "maintenance"}, 422, "status"),
    ("status wrong type", {"device_id": "00000000-0000-4000-8000-000000000000", "status": True}, 422, "status"),
    ("unknown device", {"device_id": "00000000-0000-4000-8000-000000000000"}, 404, None),
]


@pytest.mark.parametrize("label,body,status,field", HEARTBEAT_CASES, ids=[c[0] for c in HEARTBEAT_CASES])
def test_bad_heartbeat_is_rejected(svc, label, body, status, field):
    """Test whether each invalid heartbeat gets its status and changes nothing."""
    before = snapshot(svc)
    r = svc.post("/devices/heartbeat", json=body)
    assert r.status_code == status, r.text
    if field:
        assert r.json()["field"] == field
    assert snapshot(svc) == before


def test_heartbeat_with_bad_attributes_changes_nothing(svc):
    """Test whether a heartbeat with an invalid ip_address is refused whole (last_seen unchanged)."""
    device_id = svc.device["id"]
    seen = svc.get(f"/devices/{device_id}").json()["last_seen"]
    r = svc.post("/devices/heartbeat", json={"device_id": device_id, "ip_address": "10.0.0"})
    assert r.status_code == 422 and r.json()["field"] == "ip_address"
    assert svc.get(f"/devices/{device_id}").json()["last_seen"] == seen


PATCH_CASES = [
    ("bad status", {"status": "sleeping"}, 422, "status"),
    ("status wrong type", {"status": 1}, 422, "status"),
    ("immutable hardware_id", {"hardware_id": "x"}, 422, "hardware_id"),
    ("blank name", {"name": ""}, 422, "name"),
    ("location list", {"location": ["a"]}, 422, "location"),
    ("offline_after string", {"offline_after": "5"}, 422, "offline_after"),
    ("offline_after huge", {"offline_after": 10 ** 9}, 422, "offline_after"),
]


@pytest.mark.parametrize("label,body,status,field", PATCH_CASES, ids=[c[0] for c in PATCH_CASES])
def test_bad_patch_is_rejected(svc, label, body, status, field):
    """Test whether each invalid PATCH gets its status and changes nothing."""
    before = snapshot(svc)
    r = svc.patch(f"/devices/{svc.device['id']}", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert snapshot(svc) == before


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_invalid_uuid_in_path_is_400(svc, method):
    """Test whether a path id that is not a UUID answers 400 naming the id."""
    r = svc.request(method, "/devices/12345", json=None if method == "GET" else {"name": "x"})
    assert r.status_code == 400 and r.json()["field"] == "id"


def test_unknown_device_is_404(svc):
    """Test whether reads and writes of an unknown device answer 404."""
    unknown = "00000000-0000-4000-8000-000000000001"
    assert svc.get(f"/devices/{unknown}").status_code == 404
    assert svc.patch(f"/devices/{unknown}", json={"status": "maintenance"}).status_code == 404
    assert svc.delete(f"/devices/{unknown}").status_code == 404


def test_unknown_route_is_404_json_and_wrong_method_405(svc):
    """Test whether unknown routes answer a JSON 404 and wrong methods a JSON 405 with Allow."""
    r = svc.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = svc.request("PUT", "/devices/register", json=VALID)
    assert r.status_code == 405 and "POST" in r.headers["Allow"] and r.json()["error"] == "method_not_allowed"
    r = svc.get("/devices/heartbeat")
    assert r.status_code in (400, 405)


@pytest.mark.parametrize("params,field", [({"status": "bogus"}, "status"), ({"limit": "-1"}, "limit"),
                                          ({"limit": "abc"}, "limit"), ({"offset": "x"}, "offset")])
def test_bad_list_filters_are_422(svc, params, field):
    """Test whether invalid list filters answer 422 naming the parameter."""
    r = svc.get("/devices", params=params)
    assert r.status_code == 422 and r.json()["field"] == field


def test_json_without_content_type_is_parsed(svc):
    """Test whether a body sent without Content-Type (curl -d) is parsed as JSON."""
    r = requests.post(f"{svc.url}/devices/register", data=json.dumps({**VALID, "hardware_id": "no-ctype"}),
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert r.status_code == 201, r.text


def test_twenty_concurrent_registrations_give_one_201(svc):
    """Test whether 20 concurrent registrations of one hardware_id give exactly one 201 and nineteen 409s."""
    body = {**VALID, "hardware_id": "race-1"}

    def register(_):
        return requests.post(f"{svc.url}/devices/register", json=body, timeout=20)

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(register, range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19
    winner = next(r.json()["id"] for r in responses if r.status_code == 201)
    assert all(r.json()["id"] == winner for r in responses if r.status_code == 409)
    assert psql_value(svc.database_url, "SELECT count(*) FROM devices WHERE hardware_id = 'race-1'") == "1"


def test_get_with_a_body_cannot_smuggle_a_request(svc):
    """Test whether a GET carrying a body is refused and its connection closed, so the body is never parsed as a request."""
    import socket
    with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 45\r\n\r\n"
                  b"DELETE /devices/" + svc.device["id"].encode()[:29] + b"")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400") and data.count(b"HTTP/1.1") == 1
    assert svc.get(f"/devices/{svc.device['id']}").status_code == 200
