"""Secure mode against a real Mosquitto with the real dynamic-security plugin,
real Postgres and real clients: per-device broker credentials issued at
registration and enforced by the broker's ACLs, the provisioning key, blocked
hardware ids, credential rotation and revocation, the admin token, the read-only
dashboard account, and TLS with a throwaway CA made by openssl at test time."""
from __future__ import annotations

import base64
import http.client
import subprocess
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from harness import (HOST, REPO, MosquittoBroker, MqttClient, ServiceFactory, free_port, psql_value,
                     render_mosquitto_conf, wait_until)

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
PROVISIONING_KEY = "provision-" + uuid.uuid4().hex
SERVICE_USER, SERVICE_PASSWORD = "maestra-service", "svc-" + uuid.uuid4().hex
DASHBOARD_USER, DASHBOARD_PASSWORD = "dashboard", "dash-" + uuid.uuid4().hex
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_tls(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=maestra-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.crt")
    return folder


class SecureBroker(MosquittoBroker):
    """mosquitto/secure.conf on free ports, with its dynamic-security file and TLS files in workdir."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, template=REPO / "mosquitto" / "secure.conf")
        self.tls_port = free_port()
        self.tls = make_tls(self.dir / "tls")
        self.dynsec = self.dir / "dynamic-security.json"
        subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(self.dynsec), SERVICE_USER, SERVICE_PASSWORD],
                       check=True, capture_output=True, timeout=30)

    @property
    def tls_url(self) -> str:
        return f"ssl://{HOST}:{self.tls_port}"

    def start(self, timeout: float = 15.0) -> "SecureBroker":
        if self.is_running():
            return self
        text = render_mosquitto_conf(self.template.read_text(), port=self.port, ws_port=self.ws_port,
                                     persistence_dir=self.persistence_dir, log_path=self.log_path)
        text = (text.replace("listener 8883", f"listener {self.tls_port} {HOST}")
                .replace("plugin_opt_config_file .run/mosquitto/dynamic-security.json",
                         f"plugin_opt_config_file {self.dynsec}")
                .replace(".run/tls/", f"{self.tls}/"))
        self.template_text = text
        self.conf_path.write_text(text)
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf_path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        from harness import port_open
        wait_until(lambda: port_open(self.port) and port_open(self.tls_port), timeout=timeout,
                   message=lambda: self.log_tail())
        return self


def connect(broker, username=None, password=None, client_id=None, will=None, tls=False, protocol=paho.MQTTv311):
    """A paho client with credentials; returns (MqttClient, CONNACK reason code)."""
    client_id = client_id or f"sec-{uuid.uuid4().hex[:10]}"
    client = paho.Client(client_id=client_id, protocol=protocol)
    if username is not None:
        client.username_pw_set(username, password)
    if will:
        client.will_set(*will)
    if tls:
        client.tls_set(ca_certs=str(broker.tls / "ca.crt"))
    wrapper = MqttClient(client, protocol, client_id)
    client.connect(HOST, broker.tls_port if tls else broker.port, 30)
    client.loop_start()
    wrapper._wait(lambda: wrapper.connacks or wrapper.disconnects, 10, "CONNACK")
    rc = wrapper.connacks[0][1] if wrapper.connacks else wrapper.disconnects[0]
    if rc != 0:
        client.loop_stop()
    return wrapper, rc


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory):
    broker = SecureBroker(tmp_path_factory.mktemp("secure-broker")).start()
    factory = ServiceFactory(postgres, broker, tmp_path_factory.mktemp("secure-service"))
    try:
        # These tests present wrong credentials on purpose, more than the default
        # 20 a minute from one address; the throttle has its own test below.
        service = factory(MAESTRA_SECURE="true", MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN, MAESTRA_AUTH_FAILURE_LIMIT=0,
                          MAESTRA_PROVISIONING_KEY=PROVISIONING_KEY, MAESTRA_MQTT_USERNAME=SERVICE_USER,
                          MAESTRA_MQTT_PASSWORD=SERVICE_PASSWORD, MAESTRA_DASHBOARD_USERNAME=DASHBOARD_USER,
                          MAESTRA_DASHBOARD_PASSWORD=DASHBOARD_PASSWORD)
        wait_until(lambda: "secure_mode_ready" in service.log_text(), timeout=15, message=service.log_tail)
        yield broker, service
    finally:
        factory.close()
        broker.stop()


def register(service, hardware_id, key=PROVISIONING_KEY):
    headers = {"X-Provisioning-Key": key} if key else {}
    return service.post("/devices/register", json={"name": hardware_id, "device_type": "esp32",
                                                   "hardware_id": hardware_id}, headers=headers)


def device(service, hardware_id):
    r = register(service, hardware_id)
    assert r.status_code == 201, r.text
    return r.json()


def test_registration_issues_broker_credentials_shown_once(stack):
    """Test whether secure registration returns an mqtt block with a random password that is never stored or logged."""
    broker, service = stack
    body = device(service, "sec-issue-1")
    creds = body["mqtt"]
    assert creds["username"] == body["id"]
    assert len(creds["password"]) >= 22  # >= 128 bits in base64url
    assert creds["topics"]["heartbeat"] == f"maestra/devices/{body['id']}/heartbeat"
    stored = psql_value(service.database_url,
                        f"SELECT salt || ':' || password_hash FROM device_credentials WHERE device_id = '{body['id']}'")
    assert stored and creds["password"] not in stored
    assert creds["password"] not in service.log_text()
    assert creds["password"] not in broker.dynsec.read_text()
    got = service.get(f"/devices/{body['id']}", headers=ADMIN).json()
    assert "mqtt" not in got


def test_the_brokers_reason_for_dropping_the_service_is_logged(stack):
    """Test whether the broker's DISCONNECT reason code (0x98 administrative action, when the service granted itself its role) is logged."""
    _, service = stack
    lines = [l for l in service.log_text().splitlines() if "mqtt_disconnected_by_broker" in l]
    assert lines, service.log_tail(40)
    assert "reason_code=152" in lines[0] and "Administrative action" in lines[0], lines


def test_provisioning_key_is_required(stack):
    """Test whether registration without the key is 401, with a wrong key 403, and writes nothing."""
    _, service = stack
    before = psql_value(service.database_url, "SELECT count(*) FROM devices")
    r = register(service, "sec-nokey", key=None)
    assert r.status_code == 401 and r.json()["field"] == "provisioning_key"
    r = register(service, "sec-badkey", key="wrong-key-wrong-key")
    assert r.status_code == 403
    r = service.post("/devices/register", json={"name": "n", "device_type": "t", "hardware_id": "sec-fieldkey",
                                                "provisioning_key": PROVISIONING_KEY})
    assert r.status_code == 201, r.text
    assert int(psql_value(service.database_url, "SELECT count(*) FROM devices")) == int(before) + 1


def test_device_cannot_write_under_another_devices_id(stack):
    """Test whether device A's credentials cannot heartbeat or will-offline device B, while A's own topics work."""
    broker, service = stack
    a, b = device(service, "sec-a"), device(service, "sec-b")
    before = service.get(f"/devices/{b['id']}", headers=ADMIN).json()
    client, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"])
    assert rc == 0
    client.client.publish(f"maestra/devices/{b['id']}/heartbeat", b'{"status":"error"}', qos=1).wait_for_publish(5)
    client.client.publish(f"maestra/devices/{b['id']}/presence", b"offline", qos=1, retain=True).wait_for_publish(5)
    client.client.publish(f"maestra/devices/{a['id']}/heartbeat", b'{"status":"error"}', qos=1).wait_for_publish(5)
    wait_until(lambda: service.get(f"/devices/{a['id']}", headers=ADMIN).json()["status"] == "error", timeout=5)
    after = service.get(f"/devices/{b['id']}", headers=ADMIN).json()
    assert after["status"] == "online" and after["last_seen"] == before["last_seen"]
    client.close()


def test_forged_status_never_reaches_dashboards(stack):
    """Test whether a device publishing on its status topic or fleet/status is refused and dashboards never see it."""
    broker, service = stack
    a = device(service, "sec-forger")
    dashboard, rc = connect(broker, DASHBOARD_USER, DASHBOARD_PASSWORD)
    assert rc == 0
    dashboard.subscribe("maestra/devices/+/status")
    dashboard.subscribe("maestra/fleet/#")
    dashboard.wait_for(f"maestra/devices/{a['id']}/status", timeout=5)
    dashboard.clear()
    forger, _ = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"])
    forger.client.publish(f"maestra/devices/{a['id']}/status", b'{"status":"FORGED"}', qos=1, retain=True).wait_for_publish(5)
    forger.client.publish("maestra/fleet/status", b'{"status":"FORGED"}', qos=1, retain=True).wait_for_publish(5)
    forger.client.publish("maestra/hardware/sec-forger/registration", b'{"id":"FORGED"}', qos=1).wait_for_publish(5)
    service.patch(f"/devices/{a['id']}", json={"status": "maintenance"}, headers=ADMIN)
    dashboard.wait_for(f"maestra/devices/{a['id']}/status", lambda m: b"maintenance" in m.payload, timeout=5)
    assert not [m for m in dashboard.received() if b"FORGED" in m.payload]
    late, _ = connect(broker, DASHBOARD_USER, DASHBOARD_PASSWORD)
    late.subscribe("maestra/fleet/status")
    late.subscribe(f"maestra/devices/{a['id']}/status")
    time.sleep(0.5)
    assert late.received() and not [m for m in late.received() if b"FORGED" in m.payload]
    # The dashboard account is read-only.
    dashboard.client.publish("maestra/fleet/status", b'{"status":"FORGED"}', qos=1, retain=True).wait_for_publish(5)
    with pytest.raises(RuntimeError):
        dashboard.subscribe(f"maestra/devices/{a['id']}/heartbeat")
    for c in (dashboard, forger, late):
        c.close()


def test_bad_credentials_and_anonymous_are_refused(stack):
    """Test whether wrong passwords, unknown users and anonymous clients cannot connect."""
    broker, service = stack
    a = device(service, "sec-refused")
    for user, password in ((a["mqtt"]["username"], "wrong"), ("nobody-" + uuid.uuid4().hex, "x"), (None, None)):
        client, rc = connect(broker, user, password)
        assert rc != 0, (user, rc)


def test_deleted_device_is_disconnected_and_locked_out(stack):
    """Test whether DELETE revokes the account: the connected device is kicked and cannot reconnect."""
    broker, service = stack
    a = device(service, "sec-deleted")
    client, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"])
    assert rc == 0
    client.client.reconnect_delay_set(60, 60)
    assert service.delete(f"/devices/{a['id']}", headers=ADMIN).status_code == 204
    wait_until(lambda: client.disconnects, timeout=5)
    client.client.loop_stop()
    again, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"])
    assert rc != 0


def test_rotation_replaces_the_password(stack):
    """Test whether rotating credentials makes the old password fail and the new one work."""
    broker, service = stack
    a = device(service, "sec-rotate")
    r = service.post(f"/devices/{a['id']}/credentials", headers=ADMIN)
    assert r.status_code == 200, r.text
    new = r.json()["mqtt"]["password"]
    assert new != a["mqtt"]["password"]
    _, rc_old = connect(broker, a["id"], a["mqtt"]["password"])
    client, rc_new = connect(broker, a["id"], new)
    assert rc_old != 0 and rc_new == 0
    client.close()
    basic = base64.b64encode(f"{a['id']}:{new}".encode()).decode()
    assert service.post("/devices/heartbeat", json={"device_id": a["id"]},
                        headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_admin_endpoints_need_the_token(stack):
    """Test whether listing, reading, PATCH and DELETE answer 401 without and 403 with a wrong token."""
    _, service = stack
    a = device(service, "sec-admin")
    for method, path, body in (("GET", "/devices", None), ("GET", f"/devices/{a['id']}", None),
                               ("PATCH", f"/devices/{a['id']}", {"status": "maintenance"}),
                               ("DELETE", f"/devices/{a['id']}", None)):
        r = service.request(method, path, json=body)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", (method, path)
        r = service.request(method, path, json=body, headers={"Authorization": "Bearer wrong-token"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (method, path)
    assert service.get(f"/devices/{a['id']}", headers=ADMIN).status_code == 200
    assert ADMIN_TOKEN not in service.log_text()


def test_http_heartbeat_needs_the_devices_own_credential(stack):
    """Test whether an HTTP heartbeat is refused without credentials or with another device's."""
    _, service = stack
    a, b = device(service, "sec-http-a"), device(service, "sec-http-b")
    body = {"device_id": a["id"]}
    assert service.post("/devices/heartbeat", json=body).status_code == 401
    b_basic = base64.b64encode(f"{b['id']}:{b['mqtt']['password']}".encode()).decode()
    assert service.post("/devices/heartbeat", json=body, headers={"Authorization": f"Basic {b_basic}"}).status_code == 403
    r = service.post("/devices/heartbeat", json=body, headers={"Authorization": f"Bearer {b['mqtt']['password']}"})
    assert r.status_code == 403
    r = service.post("/devices/heartbeat", json=body, headers={"Authorization": f"Bearer {a['mqtt']['password']}"})
    assert r.status_code == 200 and r.json()["device_id"] == a["id"]


def test_http_heartbeat_naming_another_device_by_hardware_id_is_refused(stack):
    """Test whether A's credentials with B's hardware_id in the body are refused, and B is untouched."""
    _, service = stack
    a, b = device(service, "sec-hw-a"), device(service, "sec-hw-b")
    before = service.get(f"/devices/{b['id']}", headers=ADMIN).json()
    a_basic = base64.b64encode(f"{a['id']}:{a['mqtt']['password']}".encode()).decode()
    attack = {"hardware_id": "sec-hw-b", "status": "error", "firmware_version": "evil", "ip_address": "10.6.6.6",
              "metadata": {"owned": True}}
    r = service.post("/devices/heartbeat", json=attack, headers={"Authorization": f"Basic {a_basic}"})
    assert r.status_code == 403, r.text
    r = service.post("/devices/heartbeat", json=attack, headers={"Authorization": f"Bearer {a['mqtt']['password']}"})
    assert r.status_code == 403, r.text
    r = service.post("/devices/heartbeat", json={**attack, "hardware_id": "sec-hw-nobody"},
                     headers={"Authorization": f"Basic {a_basic}"})
    assert r.status_code == 403, r.text
    time.sleep(0.5)  # attributes are written by the flusher within 250 ms
    after = service.get(f"/devices/{b['id']}", headers=ADMIN).json()
    for field in ("status", "firmware_version", "ip_address", "metadata"):
        assert after[field] == before[field], field
    # A's own hardware id with A's credentials is A's heartbeat
    r = service.post("/devices/heartbeat", json={"hardware_id": "sec-hw-a"}, headers={"Authorization": f"Basic {a_basic}"})
    assert r.status_code == 200 and r.json()["device_id"] == a["id"]


def test_blocked_hardware_id_cannot_register(stack):
    """Test whether a blocked hardware id is refused with a clear error until unblocked."""
    _, service = stack
    assert service.request("PUT", "/hardware/sec-blocked-1/block", json={"reason": "stolen"}, headers=ADMIN).status_code == 200
    r = register(service, "sec-blocked-1")
    assert r.status_code == 403 and "blocked" in r.json()["detail"]
    assert [b["hardware_id"] for b in service.get("/hardware/blocked", headers=ADMIN).json()] == ["sec-blocked-1"]
    assert service.delete("/hardware/sec-blocked-1/block", headers=ADMIN).status_code == 204
    assert register(service, "sec-blocked-1").status_code == 201


def test_tls_service_and_device(stack, tmp_path_factory, postgres):
    """Test whether the service connects over ssl:// with a CA file and a device connects over TLS."""
    broker, service = stack
    factory = ServiceFactory(postgres, broker, tmp_path_factory.mktemp("tls-service"))
    try:
        tls_service = factory(MAESTRA_MQTT_URL=broker.tls_url, MAESTRA_MQTT_CA_FILE=str(broker.tls / "ca.crt"),
                              MAESTRA_SECURE="true", MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN,
                              MAESTRA_MQTT_USERNAME=SERVICE_USER, MAESTRA_MQTT_PASSWORD=SERVICE_PASSWORD)
        wait_until(lambda: tls_service.get("/health").json()["mqtt"] == "connected", timeout=15,
                   message=tls_service.log_tail)
        wait_until(lambda: "secure_mode_ready" in tls_service.log_text(), timeout=15, message=tls_service.log_tail)
        d = tls_service.post("/devices/register", json={"name": "t", "device_type": "esp32", "hardware_id": "tls-1"}).json()
        client, rc = connect(broker, d["mqtt"]["username"], d["mqtt"]["password"], tls=True)
        assert rc == 0
        client.client.publish(d["mqtt"]["topics"]["heartbeat"], b'{"status":"error"}', qos=1).wait_for_publish(5)
        wait_until(lambda: tls_service.get(f"/devices/{d['id']}", headers=ADMIN).json()["status"] == "error", timeout=5)
        client.close()
    finally:
        factory.close()


def test_secure_mode_without_admin_token_refuses_to_start():
    """Test whether MAESTRA_SECURE=true without an admin token stops start-up with one line."""
    from harness import fleet_manager_binary
    out = subprocess.run([str(fleet_manager_binary())], env={"PATH": "/usr/bin:/bin", "MAESTRA_SECURE": "true"},
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "MAESTRA_ADMIN_TOKEN" in out.stderr


def test_bad_block_requests_change_nothing(stack):
    """Test whether malformed or invalid block requests get 400/422 and block nothing."""
    _, service = stack
    before = service.get("/hardware/blocked", headers=ADMIN).json()
    r = service.request("PUT", "/hardware/sec-bad-block/block", data=b"{not json", headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    r = service.request("PUT", "/hardware/sec-bad-block/block", json={"reason": 5}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["field"] == "reason"
    r = service.request("PUT", "/hardware/" + "h" * 129 + "/block", headers=ADMIN)
    assert r.status_code == 422 and r.json()["field"] == "hardware_id"
    assert service.delete("/hardware/never-blocked/block", headers=ADMIN).status_code == 404
    assert service.get("/hardware/blocked", headers=ADMIN).json() == before


def test_refused_credentials_are_throttled_per_address(start_service):
    """Test whether, past MAESTRA_AUTH_FAILURE_LIMIT refused credentials in a minute, an address gets 429 with
    Retry-After even with the right token, while /health and other addresses are unaffected."""
    token = "throttle-" + uuid.uuid4().hex
    svc = start_service(MAESTRA_ADMIN_TOKEN=token, MAESTRA_PROVISIONING_KEY=PROVISIONING_KEY,
                        MAESTRA_AUTH_FAILURE_LIMIT=5)
    good = {"Authorization": f"Bearer {token}"}
    assert svc.get("/devices", headers=good).status_code == 200
    refused = [svc.get("/devices", headers={"Authorization": "Bearer guess-" + str(i)}).status_code for i in range(3)]
    refused.append(svc.get("/devices").status_code)  # no token at all counts too
    refused.append(register(svc, "throttle-1", key="wrong-key").status_code)  # a wrong provisioning key too
    assert refused == [403, 403, 403, 401, 403]
    r = svc.get("/devices", headers=good)
    assert r.status_code == 429, r.text
    assert r.json()["error"] == "too_many_failures"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert register(svc, "throttle-2").status_code == 429  # unchecked, even with the right key
    assert svc.get("/health").status_code == 200
    metrics = svc.get("/metrics").text
    assert 'maestra_rejected_total{reason="throttled"} 2' in metrics
    # Another address (loopback 127.0.0.2) is not throttled.
    conn = http.client.HTTPConnection(svc.host, svc.port, timeout=10, source_address=("127.0.0.2", 0))
    conn.request("GET", "/devices", headers=good)
    assert conn.getresponse().status == 200
    conn.close()
    assert token not in svc.log_text()


def test_throttle_can_be_turned_off(start_service):
    """Test whether MAESTRA_AUTH_FAILURE_LIMIT=0 never answers 429."""
    token = "nothrottle-" + uuid.uuid4().hex
    svc = start_service(MAESTRA_ADMIN_TOKEN=token, MAESTRA_AUTH_FAILURE_LIMIT=0)
    assert {svc.get("/devices", headers={"Authorization": "Bearer x"}).status_code for _ in range(30)} == {403}
    assert svc.get("/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 200
