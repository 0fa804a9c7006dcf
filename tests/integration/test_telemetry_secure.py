"""Telemetry in secure mode (MAESTRA_SECURE, the dynamic-security broker of
test_security): over HTTP a device's points need its own credentials, and a batch
holds only that device's rows; over MQTT the broker lets a device publish only
its own telemetry topics.
"""
from __future__ import annotations

import base64

import pytest

from harness import psql, wait_until
from test_security import (
    secure_stack,
    connect,
    device,
)


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory):
    yield from secure_stack(postgres, tmp_path_factory, "telemetry-secure")


def stored(service, device_id: str) -> list[tuple[str, float]]:
    rows = psql(service.database_url, "SELECT n.name, m.value FROM metrics m JOIN metric_names n ON n.id = m.name_id"
                                      f" WHERE m.device_id = '{device_id}' ORDER BY m.time")
    return [(r[0], float(r[1])) for r in rows]


def basic(d: dict) -> dict:
    token = base64.b64encode(f"{d['id']}:{d['mqtt']['password']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_http_telemetry_needs_the_devices_own_credentials(stack):
    """Test whether POST /metrics, /metrics/batch and /events refuse missing or another device's credentials."""
    _, service = stack
    a, b = device(service, "tel-sec-http-a"), device(service, "tel-sec-http-b")
    point = {"device_id": a["id"], "metric_name": "temperature", "metric_value": 1}
    assert service.post("/metrics", json=point).status_code == 401
    assert service.post("/metrics", json=point, headers=basic(b)).status_code == 403
    assert service.post("/events", json={"device_id": a["id"], "event_type": "boot"}, headers=basic(b)).status_code == 403
    r = service.post("/metrics/batch", json=[point, {**point, "device_id": b["id"]}], headers=basic(a))
    assert r.status_code == 422 and r.json()["field"] == "[1].device_id", r.text
    assert stored(service, a["id"]) == [] and stored(service, b["id"]) == []
    r = service.post("/metrics", json=point, headers=basic(a))
    assert r.status_code == 200, r.text
    assert service.post("/metrics/batch", json=[point, point], headers=basic(a)).status_code == 200
    assert service.post("/events", json={"device_id": a["id"], "event_type": "boot"}, headers=basic(a)).status_code == 200
    assert stored(service, a["id"]) == [("temperature", 1.0)] * 3


def test_mqtt_device_can_publish_only_its_own_telemetry(stack):
    """Test whether a device's broker account can publish its own telemetry and not another device's."""
    broker, service = stack
    a, b = device(service, "tel-sec-mqtt-a"), device(service, "tel-sec-mqtt-b")
    client, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"])
    assert rc == 0
    try:
        client.client.publish(f"maestra/devices/{b['id']}/telemetry/metrics", b'{"forged":1}', qos=1).wait_for_publish(5)
        client.client.publish(f"maestra/devices/{a['id']}/telemetry/metrics", b'{"own":2}', qos=1).wait_for_publish(5)
        wait_until(lambda: stored(service, a["id"]) == [("own", 2.0)], timeout=10,
                   message=lambda: "the device's own telemetry was not stored\n" + service.log_tail(40))
        assert stored(service, b["id"]) == []
    finally:
        client.close()
