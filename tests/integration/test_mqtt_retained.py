"""Retained status topics maestra/devices/{id}/status: a dashboard that subscribes
late gets every device's current status from retained messages, consistent with
GET /devices (whatever changed it: MQTT heartbeat, will, admin PATCH), and
DELETE /devices/{id} clears the device's retained status and presence topics so
that no ghost remains. The fleet test runs on a private broker, so "every
device" is exactly this service's devices.
"""
from __future__ import annotations

from test_mqtt_common import (
    check_status_document,
    db_device,
    fleet,  # noqa: F401 - the fixture
    heartbeat_topic,
    patch_device,
    payload_json,
    presence_topic,
    register_http,
    register_topic,
    registration_topic,
    retained_now,
    status_topic,
    device_body,
    new_hardware_id,
    wait_status,
)
from harness import wait_until


def test_late_subscriber_receives_every_device_status(start_broker, fleet, mqtt):
    """Test whether a late subscriber receives all 20 devices' retained statuses, matching GET /devices."""
    broker = start_broker()
    svc = fleet(broker=broker)
    watcher = mqtt(broker=broker, subscribe="maestra/devices/+/status")
    # 20 devices: half over MQTT, half over HTTP.
    registrar = mqtt(broker=broker)
    records = []
    for i in range(20):
        if i % 2 == 0:
            records.append(register_http(svc))
        else:
            hw = new_hardware_id("late")
            registrar.subscribe(registration_topic(hw))
            registrar.publish(register_topic(hw), device_body(hw), qos=1)
            records.append(payload_json(registrar.wait_for(registration_topic(hw), timeout=10)))
    ids = [r["id"] for r in records]
    for device_id in ids:
        wait_status(watcher, device_id, "online", "registered")

    # Change some of them, each through a different path.
    device = mqtt(broker=broker)
    expected = {device_id: ("online", "registered") for device_id in ids}
    for device_id in ids[0:3]:  # error heartbeat
        device.publish(heartbeat_topic(device_id), {"status": "error"}, qos=1)
        expected[device_id] = ("error", "reported_error")
    for device_id in ids[3:6]:  # admin maintenance
        patch_device(svc, device_id, {"status": "maintenance"})
        expected[device_id] = ("maintenance", "admin")
    for device_id in ids[6:9]:  # will
        device.publish(presence_topic(device_id), b"offline", qos=1)
        expected[device_id] = ("offline", "will")
    for device_id in ids[9:11]:  # error, then cleared by a plain heartbeat
        device.publish(heartbeat_topic(device_id), {"status": "error"}, qos=1)
        device.publish(heartbeat_topic(device_id), b"", qos=1)
        expected[device_id] = ("online", "heartbeat")
    for device_id, (status, reason) in expected.items():
        wait_status(watcher, device_id, status, reason)

    listed = {d["id"]: d for d in svc.get("/devices").json()}
    assert set(listed) == set(ids)

    retained = retained_now(mqtt, "maestra/devices/+/status", broker=broker)
    docs = {m.topic: payload_json(m) for m in retained}
    assert len(retained) == 20, sorted(docs)
    assert set(docs) == {status_topic(device_id) for device_id in ids}
    for device_id in ids:
        doc = docs[status_topic(device_id)]
        check_status_document(doc, listed[device_id])
        assert doc["status"] == listed[device_id]["status"], (device_id, doc, listed[device_id])
        assert (doc["status"], doc["reason"]) == expected[device_id], (device_id, doc)
        assert db_device(svc, device_id)["status"] == doc["status"]


def test_delete_clears_retained_status_and_presence(fleet, mqtt):
    """Test whether DELETE /devices/{id} clears the device's retained status and presence topics."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    keeper_id = register_http(svc)["id"]  # another device, whose retained status must survive
    watcher = mqtt(subscribe=f"maestra/devices/{device_id}/#")
    wait_status(watcher, device_id, "online", "registered")
    device = mqtt(will=(presence_topic(device_id), b"offline", 1, True))
    device.publish(presence_topic(device_id), b"online", qos=1, retain=True)
    device.publish(heartbeat_topic(device_id), {"status": "error"}, qos=1)
    wait_status(watcher, device_id, "error", "reported_error")
    assert len(retained_now(mqtt, f"maestra/devices/{device_id}/#")) == 2  # status + presence
    device.disconnect()

    r = svc.delete(f"/devices/{device_id}")
    assert r.status_code == 204, r.text
    # The live subscriber sees both topics cleared (empty payloads) ...
    watcher.wait_for(status_topic(device_id), lambda m: m.payload == b"", timeout=10)
    watcher.wait_for(presence_topic(device_id), lambda m: m.payload == b"", timeout=10)
    # ... and a new subscriber gets nothing retained for the device: no ghost.
    assert retained_now(mqtt, f"maestra/devices/{device_id}/#") == []
    assert svc.get(f"/devices/{device_id}").status_code == 404
    assert db_device(svc, device_id) is None
    kept = wait_until(lambda: retained_now(mqtt, status_topic(keeper_id), strict=False), timeout=10)
    assert [payload_json(m)["status"] for m in kept] == ["online"]
