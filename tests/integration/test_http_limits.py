"""What any HTTP request may cost, and how the shim answers what it will not
take: wrong methods on known paths (405 with Allow), paths and headers over the
limits (414, 431), bodies over 64 KiB whatever their framing (413, the
connection closed), compressed bodies (415), invalid UTF-8 and control
characters in paths and query strings (400 naming the field, never 503), a
database error that is not an outage (500, logged and counted), a full device
list streamed in pages, a taken port, and a prompt exit on SIGTERM with idle
keep-alive connections."""
from __future__ import annotations

import gzip
import json
import socket
import subprocess
import time

import pytest
import requests

from harness import HOST, ServiceFactory, fleet_manager_binary, psql, psql_value, wait_until

VALID = {"name": "Sensor", "device_type": "esp32"}


@pytest.fixture(scope="module")
def svc(postgres, mosquitto, tmp_path_factory):
    factory = ServiceFactory(postgres, mosquitto, tmp_path_factory.mktemp("limits"))
    service = factory()
    service.device = service.post("/devices/register", json={**VALID, "hardware_id": "limits-1"}).json()
    yield service
    factory.close()


def raw(svc, request: bytes, timeout: float = 10.0) -> tuple[str, bytes, bool]:
    """Send raw bytes; returns (status line, whole answer, whether the server closed the connection)."""
    with socket.create_connection((HOST, svc.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if length and len(rest) >= int(length[0].split(b":")[1]):
                    s.settimeout(1.0)  # the answer is whole: see whether the server closes
    return data.split(b"\r\n", 1)[0].decode(), data, closed


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/devices/heartbeat", "POST"),
    ("DELETE", "/devices/register", "POST"),
    ("GET", "/devices/register", "POST"),
    ("PUT", "/devices", "GET"),
    ("POST", "/health", "GET"),
    ("OPTIONS", "/health", "GET"),
])
def test_wrong_method_on_a_known_path_is_405_with_allow(svc, method, path, allow):
    """Test whether a wrong method on a known path (literal paths before patterns) is 405 with Allow."""
    r = svc.request(method, path)
    assert r.status_code == 405, (r.status_code, r.text)
    assert r.headers["Allow"] == allow
    assert r.json()["error"] == "method_not_allowed"


def test_a_flag_overrides_a_bad_environment_value():
    """Test whether --http-port wins over MAESTRA_HTTP_PORT=abc (checked after the override)."""
    env = {"MAESTRA_HTTP_PORT": "abc", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([str(fleet_manager_binary()), "--http-port", "18099", "--version"], env=env,
                        capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([str(fleet_manager_binary()), "--version"], env=env, capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "MAESTRA_HTTP_PORT=abc" in bad.stderr, bad.stderr


def test_path_over_the_limit_is_414_before_routing(svc):
    """Test whether a path over 1024 bytes is 414 (no pattern matching on it)."""
    r = svc.get("/devices/" + "a" * 2000)
    assert r.status_code == 414 and r.json()["error"] == "uri_too_long"


def test_too_many_or_too_large_headers_are_431(svc):
    """Test whether 65 header fields, or 16 KiB of them, get 431."""
    many = {f"X-H{i}": "v" for i in range(70)}
    assert svc.get("/health", headers=many).status_code == 431
    big = {f"X-Big{i}": "v" * 6000 for i in range(3)}  # each line under httplib's own 8 KiB
    assert svc.get("/health", headers=big).status_code == 431
    assert svc.get("/health", headers={f"X-H{i}": "v" for i in range(20)}).status_code == 200


def test_chunked_body_over_the_limit_is_refused_while_reading(svc):
    """Test whether a 10 MB chunked POST is refused with 413 after 64 KiB and the connection closes."""
    head = (b"POST /devices/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n")
    chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    with socket.create_connection((HOST, svc.port), timeout=10) as s:
        s.sendall(head)
        sent = 0
        try:
            for _ in range(160):  # 10 MB, if the server kept reading
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(5)
        answer = b""
        try:
            while True:
                part = s.recv(65536)
                if not part:
                    break
                answer += part
        except (socket.timeout, ConnectionResetError):
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"Connection: close" in answer
    assert sent < 10 * 1024 * 1024, "the server read the whole 10 MB body"


def test_content_length_over_the_limit_is_413_without_reading(svc):
    """Test whether a declared 200 MB body is refused from its Content-Length, and the connection closes."""
    status, answer, closed = raw(svc, b"POST /devices/register HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n{")
    assert status == "HTTP/1.1 413 Payload Too Large", answer[:200]
    assert closed


def test_a_get_with_a_body_cannot_smuggle_a_second_request(svc):
    """Test whether a GET whose body holds another request is refused and its connection closed, the body never run."""
    inner = b"DELETE /devices/" + svc.device["id"].encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(inner)).encode() + b"\r\n\r\n" + inner
    status, answer, closed = raw(svc, request)
    assert status == "HTTP/1.1 400 Bad Request", answer[:200]
    assert closed
    assert answer.count(b"HTTP/1.1") == 1
    assert svc.get(f"/devices/{svc.device['id']}").status_code == 200


def test_ambiguous_framing_is_refused(svc):
    """Test whether two Content-Lengths, or Content-Length with Transfer-Encoding, are 400 and close the connection (RFC 9112 6.3)."""
    body = json.dumps({**VALID, "hardware_id": "framing-1"}).encode()
    two = (b"POST /devices/register HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() +
           b"\r\nContent-Length: " + str(len(body) + 3).encode() + b"\r\n\r\n" + body)
    status, answer, closed = raw(svc, two)
    assert status == "HTTP/1.1 400 Bad Request" and closed, answer[:200]
    both = (b"POST /devices/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            b"0\r\n\r\n")
    status, answer, closed = raw(svc, both)
    assert status == "HTTP/1.1 400 Bad Request" and closed, answer[:200]
    assert psql_value(svc.database_url, "SELECT count(*) FROM devices WHERE hardware_id = 'framing-1'") == "0"


def test_compressed_bodies_are_415(svc):
    """Test whether a gzip body (a 58 KB bomb of 60 MB) is refused unread with 415."""
    bomb = gzip.compress(b" " * (60 * 1024 * 1024))
    r = svc.post("/devices/register", data=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415, r.text
    assert r.json()["error"] == "unsupported_media_type"


def test_json_with_too_many_members_is_400(svc):
    """Test whether a body of 5,000 keys is refused as malformed (bounded parse cost)."""
    body = "{" + ",".join(f'"k{i}":1' for i in range(5000)) + "}"
    r = svc.post("/devices/register", data=body)
    assert r.status_code == 400 and "members" in r.json()["detail"]


@pytest.mark.parametrize("method,path,field", [
    ("GET", "/devices?device_type=%FF", "device_type"),
    ("GET", "/devices?hardware_id=%FF%FE", "hardware_id"),
    ("GET", "/devices?status=%01", "status"),
    ("PUT", "/hardware/%FF/block", "path"),
    ("DELETE", "/hardware/%FF/block", "path"),
    ("GET", "/devices/%C0%AF", "path"),
])
def test_invalid_utf8_and_control_characters_are_400_naming_the_field(svc, method, path, field):
    """Test whether invalid UTF-8 or control characters in a path or query are 400 naming it, never 503."""
    before = psql_value(svc.database_url, "SELECT count(*) FROM blocked_hardware_ids")
    r = svc.request(method, path)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["field"] == field
    assert psql_value(svc.database_url, "SELECT count(*) FROM blocked_hardware_ids") == before


def test_a_nul_in_the_path_never_serves_a_file(svc):
    """Test whether /index.html%00.json is refused instead of serving index.html."""
    r = svc.get("/index.html%00.json")
    assert r.status_code == 400 and r.json()["field"] == "path"


def test_a_database_error_that_is_not_an_outage_is_500_logged_and_counted(start_service):
    """Test whether a broken table (a bug or bad data, not a lost connection) answers 500, is logged and counted, and /health stays 200."""
    svc = start_service()
    device = svc.post("/devices/register", json={**VALID, "hardware_id": "limits-500"}).json()
    psql(svc.database_url, "ALTER TABLE device_status_history RENAME TO device_status_history_gone")
    try:
        r = svc.get(f"/devices/{device['id']}/history")
        assert r.status_code == 500, r.text
        assert r.json() == {"error": "internal_error", "detail": "internal error"}
        assert "device_status_history" in svc.log_text()  # the cause is in the log
        metrics = svc.get("/metrics").text
        assert "maestra_internal_errors_total 1" in metrics
        assert svc.get("/health").status_code == 200
    finally:
        psql(svc.database_url, "ALTER TABLE device_status_history_gone RENAME TO device_status_history")


def test_the_full_list_is_streamed_in_pages(start_service):
    """Test whether GET /devices without limit returns every device (more than one page) as one JSON array, chunked."""
    svc = start_service()
    psql(svc.database_url,
         "INSERT INTO devices (name, device_type, hardware_id, status, connected, last_seen, status_changed_at, "
         "status_reason, created_at, updated_at) SELECT 'n' || g, 't', 'bulk-' || g, 'offline', false, now(), now(), "
         "'registered', now() + g * interval '1 ms', now() FROM generate_series(1, 2500) g")
    r = svc.get("/devices")
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked"
    devices = r.json()
    assert len(devices) == 2500, [d["hardware_id"] for d in devices if not d["hardware_id"].startswith("bulk-")]
    assert len({d["hardware_id"] for d in devices}) == 2500
    assert len(svc.get("/devices?limit=1200&offset=100").json()) == 1200


def test_a_taken_port_is_refused_with_one_line(start_service, new_database):
    """Test whether a second fleet-manager on the same HTTP port exits 1 with one clear line, and the first keeps serving."""
    first = start_service()
    second = start_service(wait=False, database_url=new_database(), MAESTRA_HTTP_PORT=first.port)
    wait_until(lambda: second.proc.poll() is not None, timeout=15, message=second.log_tail)
    assert second.proc.returncode == 1
    assert "the port is in use" in second.log_text()
    assert first.get("/health").status_code == 200


def test_sigterm_with_idle_keep_alive_connections_exits_at_once(start_service):
    """Test whether SIGTERM with idle keep-alive connections open exits in well under a second."""
    svc = start_service()
    sessions = []
    for _ in range(4):
        s = requests.Session()
        s.trust_env = False
        assert s.get(svc.url + "/health").status_code == 200  # the connection stays open, idle
        sessions.append(s)
    start = time.monotonic()
    assert svc.stop() == 0
    took = time.monotonic() - start
    assert took < 0.7, f"SIGTERM took {took:.2f} s"
    for s in sessions:
        s.close()
