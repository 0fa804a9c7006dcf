"""tests/integration/test_fixtures_smoke.py — proves the integration harness
itself (owned by the tooling): the Postgres cluster, the Mosquitto brokers
(TCP, websockets, retained messages, persistence across a restart, wills) and
the service factory, the latter driven by a stand-in process, not fleet-manager.
"""
from __future__ import annotations

import json
import signal
import textwrap
import uuid

import pytest

from harness import (
    HOST,
    ServiceFactory,
    ServiceStartError,
    WaitTimeout,
    free_port,
    port_open,
    psql,
    psql_value,
    wait_until,
)


def unique_topic(name: str) -> str:
    return f"smoke/{uuid.uuid4().hex[:8]}/{name}"


# --- Postgres -------------------------------------------------------------------------------------


def test_postgres_table_roundtrip(database_url):
    assert "/maestra_" in database_url
    psql(database_url, """
        CREATE TABLE gadgets (id serial PRIMARY KEY, name text NOT NULL, note text);
        INSERT INTO gadgets (name, note) VALUES ('esp32', 'a, "quoted" note'), ('pi', NULL);
    """)
    rows = psql(database_url, "SELECT id, name, note FROM gadgets ORDER BY id")
    assert rows == [["1", "esp32", 'a, "quoted" note'], ["2", "pi", None]]
    assert psql_value(database_url, "SELECT count(*) FROM gadgets") == "2"


def test_postgres_databases_are_separate_and_local(postgres, database_url, new_database):
    other = new_database()
    assert other != database_url
    psql(other, "CREATE TABLE only_here (x int)")
    assert psql_value(database_url, "SELECT to_regclass('only_here')") is None
    assert psql_value(other, "SHOW listen_addresses") == HOST
    assert psql_value(other, "SELECT current_user") == "postgres"


# --- Mosquitto -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [5, 311])
def test_retained_publish_subscribe(mqtt, protocol):
    topic = unique_topic("status")
    publisher = mqtt(protocol=protocol)
    publisher.publish(topic, {"status": "online"}, qos=1, retain=True)
    subscriber = mqtt(protocol=protocol, subscribe=topic)
    message = subscriber.wait_for(topic, timeout=5)
    assert message.retain
    assert json.loads(message.payload) == {"status": "online"}
    # a live (not retained) message reaches the subscriber too
    publisher.publish(topic, b"live", qos=1)
    live = subscriber.wait_for(topic, lambda m: m.payload == b"live", timeout=5)
    assert not live.retain


def test_websockets_listener(mosquitto, mqtt):
    assert port_open(mosquitto.ws_port)
    topic = unique_topic("ws")
    browser_like = mqtt(transport="websockets", subscribe=topic)
    mqtt().publish(topic, b"over tcp", qos=1)
    assert browser_like.wait_for(topic, timeout=5).payload == b"over tcp"


def test_listeners_bound_to_loopback_only(mosquitto):
    text = mosquitto.conf_path.read_text()
    assert f"listener {mosquitto.port} {HOST}" in text
    assert f"listener {mosquitto.ws_port} {HOST}" in text


def test_will_published_when_client_vanishes(mqtt):
    topic = unique_topic("presence")
    watcher = mqtt(subscribe=topic)
    device = mqtt(will=(topic, b"offline", 1, True))
    device.publish(topic, b"online", qos=1, retain=True)
    watcher.wait_for(topic, lambda m: m.payload == b"online", timeout=5)
    device.drop()
    watcher.wait_for(topic, lambda m: m.payload == b"offline", timeout=10)


def test_session_broker_restart_keeps_retained(mosquitto, mqtt):
    topic = unique_topic("retained")
    mqtt().publish(topic, b"kept", qos=1, retain=True)
    port, ws_port = mosquitto.port, mosquitto.ws_port
    mosquitto.stop()
    assert not port_open(port)
    mosquitto.start()
    assert (mosquitto.port, mosquitto.ws_port) == (port, ws_port)
    message = mqtt(subscribe=topic).wait_for(topic, timeout=5)
    assert message.retain and message.payload == b"kept"


def test_private_broker_restart_keeps_persistent_session(start_broker, mqtt):
    """A persistent session's QoS 1 messages queued while the subscriber was away
    survive a broker restart: the service relies on this for heartbeats."""
    broker = start_broker()
    topic = unique_topic("heartbeat")
    service = mqtt(broker=broker, client_id="svc-" + uuid.uuid4().hex[:6], clean=False,
                   session_expiry=3600, subscribe=topic)
    client_id = service.client_id
    service.disconnect()
    device = mqtt(broker=broker)
    for i in range(5):
        device.publish(topic, f"beat {i}".encode(), qos=1)
    device.disconnect()
    broker.restart()
    back = mqtt(broker=broker, client_id=client_id, clean=False, session_expiry=3600)
    flags, _rc = back.wait_connected()
    assert flags.get("session present") == 1
    wait_until(lambda: len(back.received(topic)) >= 5, timeout=10,
               message=lambda: broker.log_tail())
    assert [m.payload for m in back.received(topic)] == [f"beat {i}".encode() for i in range(5)]


def test_client_reconnects_after_broker_restart(start_broker, mqtt):
    broker = start_broker()
    client = mqtt(broker=broker)
    broker.stop()
    wait_until(lambda: not client.connected, timeout=10)
    broker.start()
    client.wait_connected(count=2, timeout=15)


# --- the service factory, driven by a stand-in binary ------------------------------------------------

STAND_IN = textwrap.dedent("""\
    #!/usr/bin/python3
    # A stand-in for fleet-manager: answers GET /health with its MAESTRA_* environment.
    import http.server, json, os, signal, sys
    if os.environ.get("STAND_IN_FAIL"):
        print("bad configuration: STAND_IN_FAIL is set", flush=True)
        sys.exit(2)
    env = {k: v for k, v in os.environ.items() if k.startswith("MAESTRA_")}
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "env": env, "pid": os.getpid()}).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    signal.signal(signal.SIGTERM, lambda *a: (print("stand-in: SIGTERM", flush=True), sys.exit(0)))
    server = http.server.HTTPServer((env["MAESTRA_HTTP_HOST"], int(env["MAESTRA_HTTP_PORT"])), Handler)
    print("stand-in: listening", flush=True)
    server.serve_forever()
""")


@pytest.fixture
def stand_in_factory(postgres, mosquitto, tmp_path):
    binary = tmp_path / "stand-in"
    binary.write_text(STAND_IN)
    binary.chmod(0o755)
    factory = ServiceFactory(postgres, mosquitto, tmp_path / "logs", binary=binary)
    yield factory
    factory.close()


def test_service_factory_environment_and_lifecycle(stand_in_factory, mosquitto, postgres):
    svc = stand_in_factory(MAESTRA_OFFLINE_AFTER=2)
    env = svc.get("/health").json()["env"]
    assert env["MAESTRA_HTTP_PORT"] == str(svc.port)
    assert env["MAESTRA_HTTP_HOST"] == HOST
    assert env["MAESTRA_MQTT_URL"] == f"tcp://{HOST}:{mosquitto.port}"
    assert env["MAESTRA_OFFLINE_AFTER"] == "2"
    assert env["MAESTRA_DATABASE_URL"] == svc.database_url
    assert psql_value(svc.database_url, "SELECT 1") == "1"
    assert env["MAESTRA_MQTT_CLIENT_ID"] == svc.client_id

    first_pid = svc.pid
    svc.restart()
    again = svc.get("/health").json()
    assert again["pid"] != first_pid
    assert again["env"] == env  # same port, database and client id
    assert "stand-in: SIGTERM" in svc.log_text()

    other = stand_in_factory(database_url=svc.database_url)
    assert other.port != svc.port and other.client_id != svc.client_id
    assert other.database_url == svc.database_url

    assert svc.stop() == 0
    assert other.kill() == -signal.SIGKILL


def test_service_factory_reports_a_failed_start(stand_in_factory):
    with pytest.raises(ServiceStartError, match="bad configuration"):
        stand_in_factory(STAND_IN_FAIL=1, timeout=5)


def test_wait_until_is_bounded():
    with pytest.raises(WaitTimeout, match="never"):
        wait_until(lambda: False, timeout=0.2, message="never")
    assert wait_until(lambda: 42, timeout=1) == 42
    assert free_port() != free_port()
