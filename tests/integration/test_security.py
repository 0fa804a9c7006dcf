"""Secure mode against a real Mosquitto with the real dynamic-security plugin,
real Postgres and real clients: per-device broker credentials issued at
registration and enforced by the broker's ACLs, the provisioning key, blocked
hardware ids, credential rotation and revocation, the admin token, the read-only
dashboard account, client-id binding (no account can connect with another
device's client id: a device's, the dashboard's, an issued dashboard credential),
issued dashboard credentials and their expiry, and TLS with a throwaway CA made by
openssl at test time."""
from __future__ import annotations

import base64
import http.client
import re
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
    """A paho client with credentials; returns (MqttClient, CONNACK reason code). Every account connects with
    its own client id, its username, unless another is given."""
    client_id = client_id or username or f"sec-{uuid.uuid4().hex[:10]}"
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


def secure_stack(postgres, tmp_path_factory, name: str, **env):
    """A secure-mode broker (dynamic security) and a fleet-manager in secure mode
    on it, ready (`secure_mode_ready`); yields (broker, service), stops both.
    For the module fixtures of this file, test_commands_security and
    test_telemetry_secure; `env` adds service settings."""
    broker = SecureBroker(tmp_path_factory.mktemp(f"{name}-broker")).start()
    factory = ServiceFactory(postgres, broker, tmp_path_factory.mktemp(f"{name}-service"))
    try:
        # The tests present wrong credentials on purpose, more than the default
        # 20 a minute from one address; the throttle has its own test below.
        service = factory(MAESTRA_SECURE="true", MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN, MAESTRA_AUTH_FAILURE_LIMIT=0,
                          MAESTRA_PROVISIONING_KEY=PROVISIONING_KEY, MAESTRA_MQTT_USERNAME=SERVICE_USER,
                          MAESTRA_MQTT_PASSWORD=SERVICE_PASSWORD, **env)
        wait_until(lambda: "secure_mode_ready" in service.log_text(), timeout=15, message=service.log_tail)
        yield broker, service
    finally:
        factory.close()
        broker.stop()


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory):
    yield from secure_stack(postgres, tmp_path_factory, "secure", MAESTRA_DASHBOARD_USERNAME=DASHBOARD_USER,
                            MAESTRA_DASHBOARD_PASSWORD=DASHBOARD_PASSWORD)


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
    dashboard, rc = connect(broker, DASHBOARD_USER, DASHBOARD_PASSWORD, client_id=DASHBOARD_USER)
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
    issued = service.post("/dashboard/credentials", headers=ADMIN).json()  # a second dashboard at the same time
    late, _ = connect(broker, issued["username"], issued["password"], client_id=issued["client_id"])
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


def online_device(broker, service, hardware_id):
    """A registered device connected with its own client id, will and birth; online."""
    d = device(service, hardware_id)
    presence = f"maestra/devices/{d['id']}/presence"
    client, rc = connect(broker, d["mqtt"]["username"], d["mqtt"]["password"], client_id=d["mqtt"]["client_id"],
                         will=(presence, b'{"state":"offline","session":1}', 1, True))
    assert rc == 0 and d["mqtt"]["client_id"] == d["id"]
    client.client.publish(presence, b'{"state":"online","session":1}', qos=1, retain=True).wait_for_publish(5)
    wait_until(lambda: service.get(f"/devices/{d['id']}", headers=ADMIN).json()["status"] == "online", timeout=5)
    return d, client


def assert_undisturbed(service, d, client, seconds=1.5):
    """The device's connection was never closed and its will never fired."""
    time.sleep(seconds)
    assert not client.disconnects and client.connected, client.disconnects
    assert service.get(f"/devices/{d['id']}", headers=ADMIN).json()["status"] == "online"
    reasons = [h["reason"] for h in service.get(f"/devices/{d['id']}/history", headers=ADMIN).json()]
    assert "will" not in reasons, reasons


@pytest.mark.parametrize("clean", [True, False], ids=["clean-session", "persistent-session"])
def test_device_account_cannot_take_over_another_devices_client_id(stack, clean):
    """Test whether device A's account connecting with device B's client id (clean or persistent session) is
    refused, while B stays connected and online and its will never fires."""
    broker, service = stack
    tag = "clean" if clean else "persistent"
    a = device(service, f"sec-takeover-a-{tag}")
    b, b_client = online_device(broker, service, f"sec-takeover-b-{tag}")
    impostor = paho.Client(client_id=b["id"], clean_session=clean)
    impostor.username_pw_set(a["mqtt"]["username"], a["mqtt"]["password"])
    wrapper = MqttClient(impostor, paho.MQTTv311, b["id"])
    impostor.connect(HOST, broker.port, 30)
    impostor.loop_start()
    wrapper._wait(lambda: wrapper.connacks or wrapper.disconnects, 10, "CONNACK")
    impostor.loop_stop()
    assert wrapper.connacks and wrapper.connacks[0][1] != 0, wrapper.connacks
    assert_undisturbed(service, b, b_client)
    # A's own client id still works for A.
    own, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"], client_id=a["id"])
    assert rc == 0
    for c in (own, b_client):
        c.close()


def test_dashboard_accounts_cannot_take_over_a_devices_client_id(stack):
    """Test whether the static dashboard account and an issued dashboard credential are refused with a device's
    client id (the device stays online, no will), and each connects only with its own client id."""
    broker, service = stack
    b, b_client = online_device(broker, service, "sec-takeover-dash")
    _, rc = connect(broker, DASHBOARD_USER, DASHBOARD_PASSWORD, client_id=b["id"])
    assert rc != 0
    assert_undisturbed(service, b, b_client, seconds=0.5)
    issued = service.post("/dashboard/credentials", headers=ADMIN).json()
    for user, password in ((DASHBOARD_USER, DASHBOARD_PASSWORD), (issued["username"], issued["password"])):
        _, rc = connect(broker, user, password, client_id=b["id"])
        assert rc != 0, user
        _, rc = connect(broker, user, password, client_id=f"dashboard-{uuid.uuid4().hex[:8]}")  # any other id
        assert rc != 0, user
    assert_undisturbed(service, b, b_client)
    own, rc = connect(broker, issued["username"], issued["password"], client_id=issued["client_id"])
    assert rc == 0
    own.subscribe("maestra/devices/+/status")
    own.wait_for(f"maestra/devices/{b['id']}/status", timeout=5)
    own.close()
    static, rc = connect(broker, DASHBOARD_USER, DASHBOARD_PASSWORD, client_id=DASHBOARD_USER)
    assert rc == 0
    static.close()
    b_client.close()


def test_issued_dashboard_credentials(stack):
    """Test whether POST /dashboard/credentials needs the admin token, checks ttl_seconds, issues a read-only
    account bound to its own client id, and whether the service removes it (and disconnects it) once expired."""
    broker, service = stack
    assert service.post("/dashboard/credentials").status_code == 401
    assert service.post("/dashboard/credentials", headers={"Authorization": "Bearer wrong"}).status_code == 403
    for bad in ({"ttl_seconds": 5}, {"ttl_seconds": 86401}, {"ttl_seconds": "60"}, {"ttl_seconds": 1.5}):
        r = service.post("/dashboard/credentials", json=bad, headers=ADMIN)
        assert r.status_code == 422 and r.json()["field"] == "ttl_seconds", (bad, r.text)
    r = service.post("/dashboard/credentials", json={"ttl_seconds": 10}, headers=ADMIN)
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["client_id"] == issued["username"] and issued["username"].startswith("dashboard-")
    assert len(issued["password"]) >= 43
    assert issued["topics"] == {"devices": "maestra/devices/+/status", "fleet": "maestra/fleet/#"}
    assert issued["password"] not in service.log_text()
    client, rc = connect(broker, issued["username"], issued["password"], client_id=issued["client_id"])
    assert rc == 0
    client.subscribe("maestra/fleet/#")
    with pytest.raises(RuntimeError):
        client.subscribe("maestra/devices/+/heartbeat")
    client.client.reconnect_delay_set(60, 60)
    # Expired: removed by the service within its sweep, which disconnects it; it cannot come back.
    wait_until(lambda: client.disconnects, timeout=30, message=service.log_tail)
    client.client.loop_stop()
    assert "dashboard_credentials_expired" in service.log_text()
    _, rc = connect(broker, issued["username"], issued["password"], client_id=issued["client_id"])
    assert rc != 0


def ctrl(broker, *args):
    """mosquitto_ctrl dynsec as the service's (admin) account."""
    return subprocess.run(["mosquitto_ctrl", "-h", HOST, "-p", str(broker.port), "-u", SERVICE_USER,
                           "-P", SERVICE_PASSWORD, "dynsec", *args], capture_output=True, text=True, timeout=30)


def test_restart_binds_device_accounts_made_before_binding(stack):
    """Test whether, after a restart, the service binds device accounts that have no client id (as every version
    before the binding made them): another device's account can take the id before, not after; an unbound account
    that is not the service's is named in a warning."""
    broker, service = stack
    a, b = device(service, "sec-unbound-a"), device(service, "sec-unbound-b")
    # Make A's and B's accounts what an earlier version made: no client id.
    for d in (a, b):
        out = ctrl(broker, "setClientId", d["id"])
        assert out.returncode == 0, out.stderr + out.stdout
    out = ctrl(broker, "createClient", "operator-extra", "-p", "x-" + uuid.uuid4().hex)
    assert out.returncode == 0, out.stderr + out.stdout
    before, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"], client_id=b["id"])
    assert rc == 0  # the hole: A's account may use B's client id
    before.close()
    offset = len(service.log_text())
    service.restart()
    wait_until(lambda: "device_accounts_bound" in service.log_text()[offset:], timeout=30, message=service.log_tail)
    line = next(l for l in service.log_text()[offset:].splitlines() if "device_accounts_bound" in l)
    assert re.search(r"bound_now=2\b", line), line
    warning = [l for l in service.log_text()[offset:].splitlines() if "broker_accounts_without_client_id" in l]
    assert warning and "operator-extra" in warning[0] and SERVICE_USER not in warning[0], warning
    _, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"], client_id=b["id"])
    assert rc != 0
    own, rc = connect(broker, b["mqtt"]["username"], b["mqtt"]["password"], client_id=b["id"])
    assert rc == 0
    own.close()
    ctrl(broker, "deleteClient", "operator-extra")
    # Idempotent: the next start binds nothing.
    offset = len(service.log_text())
    service.restart()
    wait_until(lambda: "device_accounts_bound" in service.log_text()[offset:], timeout=30, message=service.log_tail)
    line = next(l for l in service.log_text()[offset:].splitlines() if "device_accounts_bound" in l)
    assert re.search(r"bound_now=0\b", line), line
