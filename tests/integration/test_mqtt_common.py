"""Shared helpers of the MQTT integration tests (test_mqtt_*.py); no tests here.

Topic names of docs/protocol.md, HTTP/SQL shortcuts against a running fleet-manager,
status-document waits on a recording MQTT client, the Prometheus text parser for
GET /metrics, and `retained_now`, which tells exactly which retained messages a
new subscriber gets (no sleeps: a retained marker subscribed after the filter
arrives only after every retained message of the filter has been delivered).
"""
from __future__ import annotations

import json
import re
import signal
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from harness import psql, psql_value, wait_until

PREFIX = "maestra"


# --- topic names (docs/protocol.md) -------------------------------------------------------------------


def register_topic(hardware_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/hardware/{hardware_id}/register"


def registration_topic(hardware_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/hardware/{hardware_id}/registration"


def heartbeat_topic(device_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/devices/{device_id}/heartbeat"


def presence_topic(device_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/devices/{device_id}/presence"


def status_topic(device_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/devices/{device_id}/status"


def fleet_status_topic(prefix: str = PREFIX) -> str:
    return f"{prefix}/fleet/status"


def fleet_summary_topic(prefix: str = PREFIX) -> str:
    return f"{prefix}/fleet/summary"


def new_hardware_id(tag: str = "hw") -> str:
    """A hardware id no other test uses (valid as a topic level)."""
    return f"{tag}-{uuid.uuid4().hex[:12]}"


# --- time -------------------------------------------------------------------------------------------

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def ts(text: str) -> datetime:
    """Parse the service's RFC 3339 UTC millisecond timestamps (asserting the format)."""
    assert isinstance(text, str) and RFC3339_MS.match(text), f"not an RFC 3339 ms UTC timestamp: {text!r}"
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def utc_now_ms() -> datetime:
    """Now, truncated to the millisecond like the service's timestamps."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- HTTP and SQL ---------------------------------------------------------------------------------


def device_body(hardware_id: str, **extra: Any) -> dict:
    body = {"name": f"Test {hardware_id}", "device_type": "esp32", "hardware_id": hardware_id}
    body.update(extra)
    return body


def register_http(svc, hardware_id: str | None = None, **extra: Any) -> dict:
    """POST /devices/register; asserts 201 and returns the device record."""
    hardware_id = hardware_id or new_hardware_id()
    r = svc.post("/devices/register", json=device_body(hardware_id, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def get_device(svc, device_id: str) -> dict:
    r = svc.get(f"/devices/{device_id}")
    assert r.status_code == 200, r.text
    return r.json()


def patch_device(svc, device_id: str, body: dict) -> dict:
    r = svc.patch(f"/devices/{device_id}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def db_device(svc, device_id: str) -> dict | None:
    """The devices row (status, connected, reported_error, maintenance, last_seen
    as epoch ms, status_reason, firmware_version, hardware_id) or None."""
    rows = psql(svc.database_url,
                "SELECT status, connected, reported_error, maintenance,"
                " (extract(epoch from last_seen) * 1000)::bigint, status_reason, firmware_version, hardware_id"
                f" FROM devices WHERE id = '{device_id}'")
    if not rows:
        return None
    status, connected, reported_error, maintenance, last_seen_ms, reason, firmware, hardware_id = rows[0]
    return {"status": status, "connected": connected == "t", "reported_error": reported_error == "t",
            "maintenance": maintenance == "t", "last_seen_ms": int(last_seen_ms), "status_reason": reason,
            "firmware_version": firmware, "hardware_id": hardware_id}


def db_history(svc, device_id: str) -> list[tuple[str | None, str, str]]:
    """(from_status, to_status, reason) of the device's history rows, oldest first."""
    rows = psql(svc.database_url, "SELECT from_status, to_status, reason FROM device_status_history"
                                  f" WHERE device_id = '{device_id}' ORDER BY id")
    return [(r[0], r[1], r[2]) for r in rows]


def db_count(svc, where: str = "true") -> int:
    return int(psql_value(svc.database_url, f"SELECT count(*) FROM devices WHERE {where}"))


def ms(dt: datetime) -> int:
    return int(round(dt.timestamp() * 1000))


def health(svc) -> dict:
    r = svc.get("/health")
    assert r.status_code == 200, r.text
    return r.json()


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$')


def metrics(svc) -> dict[tuple[str, str], float]:
    """GET /metrics as {(name, 'label="value",...'): value}."""
    r = svc.get("/metrics")
    assert r.status_code == 200, r.text
    out: dict[tuple[str, str], float] = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        out[(m.group(1), m.group(3) or "")] = float(m.group(4))
    return out


def rejected(svc) -> dict[str, float]:
    """maestra_rejected_total by reason."""
    return {labels.split('"')[1]: value for (name, labels), value in metrics(svc).items()
            if name == "maestra_rejected_total"}


# --- MQTT --------------------------------------------------------------------------------------------


def payload_json(message) -> Any:
    return json.loads(message.payload.decode())


def status_docs(client, device_id: str, prefix: str = PREFIX, start: int = 0) -> list[dict]:
    """Every non-empty status document the client received for the device (from index start)."""
    topic = status_topic(device_id, prefix)
    return [payload_json(m) for m in client.messages[start:] if m.topic == topic and m.payload]


def wait_status(client, device_id: str, status: str, reason: str | None = None, *, prefix: str = PREFIX,
                start: int = 0, timeout: float = 10.0):
    """Wait for a status document with that status (and reason) on the device's
    status topic; returns (message, document)."""
    def matches(m) -> bool:
        if not m.payload:
            return False
        doc = payload_json(m)
        return doc.get("status") == status and (reason is None or doc.get("reason") == reason)
    message = client.wait_for(status_topic(device_id, prefix), matches, timeout=timeout, start=start)
    return message, payload_json(message)


def registered_and_watched(svc, mqtt, broker=None) -> tuple[str, Any]:
    """A device registered over HTTP and a client subscribed to its status topic,
    returned once the `online` (registered) document has arrived: (device id, client)."""
    device_id = register_http(svc)["id"]
    watcher = mqtt(broker=broker, subscribe=status_topic(device_id))
    wait_status(watcher, device_id, "online", "registered")
    return device_id, watcher


def check_status_document(doc: dict, record: dict) -> None:
    """The status document has DESIGN's fields and agrees with the device record."""
    assert set(doc) == {"device_id", "name", "device_type", "hardware_id", "status", "last_seen",
                        "changed_at", "reason"}, doc
    assert doc["device_id"] == record["id"]
    assert doc["name"] == record["name"]
    assert doc["device_type"] == record["device_type"]
    assert doc["hardware_id"] == record["hardware_id"]
    ts(doc["last_seen"])
    ts(doc["changed_at"])
    assert doc["reason"] in {"registered", "heartbeat", "will", "disconnect", "timeout", "admin",
                             "reported_error", "restart"}


def retained_now(mqtt, topic_filter: str, broker=None, strict: bool = True) -> list:
    """The retained messages a brand-new subscriber to topic_filter receives.

    A retained marker on a private topic is subscribed right after the filter;
    the broker sends a subscription's retained messages in order, so once the
    marker has arrived every retained message of the filter has arrived too.
    strict: fail if a live (non-retained) message on the filter arrived meanwhile
    (nothing should be changing); strict=False ignores them, for polling loops
    that wait for a publication in flight.
    """
    marker = f"test/marker/{uuid.uuid4().hex}"
    publisher = mqtt(broker=broker)
    publisher.publish(marker, b"marker", qos=1, retain=True)
    subscriber = mqtt(broker=broker)
    subscriber.subscribe(topic_filter)
    subscriber.subscribe(marker)
    subscriber.wait_for(marker, timeout=10)
    publisher.publish(marker, b"", qos=1, retain=True)  # clear the marker
    found = subscriber.received(topic_filter)
    live = [(m.topic, m.payload[:200]) for m in found if not m.retain]
    assert not (strict and live), f"live messages arrived during the retained check: {live}"
    return [m for m in found if m.retain]


def wait_metric(svc, read: Callable[[], Any], check: Callable[[Any], bool], timeout: float = 10.0,
                what: str = "metric") -> Any:
    """Poll read() (e.g. lambda: rejected(svc)) until check(value); returns the value."""
    last: list[Any] = [None]

    def probe():
        last[0] = read()
        return check(last[0])
    wait_until(probe, timeout=timeout, message=lambda: f"{what} never matched; last value {last[0]!r}\n"
                                                       + svc.log_tail(30))
    return last[0]


# --- readiness ------------------------------------------------------------------------------------


def mqtt_messages_total(svc) -> float:
    return metrics(svc)[("maestra_mqtt_messages_total", "")]


def wait_mqtt_ready(svc, mqtt, broker=None, prefix: str = PREFIX, timeout: float = 15.0) -> None:
    """Wait until the service is connected to the broker *and subscribed*.

    GET /health says `"mqtt":"connected"` as soon as the CONNACK arrives, before
    the SUBSCRIBEs are acknowledged, so a device message published right then
    could be lost. The probe is an empty, non-retained presence message for a
    random device id: the service counts it in maestra_mqtt_messages_total and
    otherwise ignores it (an empty presence is a cleared retained topic).
    """
    wait_until(lambda: health(svc).get("mqtt") == "connected", timeout=timeout,
               message=lambda: "service never reported mqtt connected\n" + svc.log_tail(30))
    probe = mqtt(broker=broker)
    base = mqtt_messages_total(svc)
    topic = presence_topic(str(uuid.uuid4()), prefix)

    def seen() -> bool:
        probe.publish(topic, b"", qos=0)
        return wait_until_quiet(lambda: mqtt_messages_total(svc) > base, 0.3)
    wait_until(seen, timeout=timeout, interval=0.0,
               message=lambda: "service never received a probe message\n" + svc.log_tail(30))
    probe.close()


def wait_until_quiet(predicate: Callable[[], Any], timeout: float) -> Any:
    """Like wait_until but returns False instead of raising (for polling loops)."""
    try:
        return wait_until(predicate, timeout=timeout, interval=0.02)
    except AssertionError:
        return False


def start_ready(start_service, mqtt, *, broker=None, prefix: str = PREFIX, **kwargs):
    """start_service(...) and wait until it is subscribed to the broker."""
    if prefix != PREFIX:
        kwargs["MAESTRA_TOPIC_PREFIX"] = prefix
    svc = start_service(broker=broker, **kwargs)
    wait_mqtt_ready(svc, mqtt, broker=broker, prefix=prefix)
    return svc


def stop_service(svc, sig: int = signal.SIGTERM) -> int | None:
    """Stop the service; the test's idle HTTP keep-alive connection is closed first,
    otherwise a graceful stop waits out httplib's 5 s keep-alive timeout."""
    svc.http.close()
    return svc.stop(sig)


def restart_ready(svc, mqtt, *, broker=None, prefix: str = PREFIX):
    """Restart the service (same port, database, client id) and wait until subscribed."""
    stop_service(svc)
    svc.start()
    wait_mqtt_ready(svc, mqtt, broker=broker, prefix=prefix)
    return svc


@pytest.fixture
def fleet(start_service, mqtt):
    """fleet(*, broker=None, prefix="maestra", **env) -> a FleetService that is
    healthy and subscribed. At teardown the HTTP sessions are closed before
    start_service stops the processes, so that each stop takes milliseconds."""
    started = []

    def start(*, broker=None, prefix: str = PREFIX, **kwargs):
        svc = start_ready(start_service, mqtt, broker=broker, prefix=prefix, **kwargs)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.http.close()
