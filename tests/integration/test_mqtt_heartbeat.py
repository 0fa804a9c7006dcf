"""Heartbeats over MQTT on maestra/devices/{id}/heartbeat: an empty payload or
DESIGN's JSON refreshes last_seen (seen over HTTP GET /devices/{id} and in
Postgres), {"status":"error"} sets `error` and a plain heartbeat clears it (both
stored in the history with reasons reported_error / heartbeat and published
retained), optional attributes are stored, and MQTT and HTTP heartbeats go
through the same rules.
"""
from __future__ import annotations

from test_mqtt_common import (
    db_device,
    db_history,
    fleet,  # noqa: F401 - the fixture
    get_device,
    heartbeat_topic,
    metrics,
    ms,
    register_http,
    registered_and_watched,
    status_topic,
    ts,
    wait_status,
)
from harness import wait_until


def test_heartbeat_refreshes_last_seen_and_sets_then_clears_error(fleet, mqtt):
    """Test whether MQTT heartbeats refresh last_seen over HTTP and set, then clear, the error status with history."""
    svc = fleet()
    record = register_http(svc)
    device_id = record["id"]
    watcher = mqtt(subscribe=status_topic(device_id))
    wait_status(watcher, device_id, "online", "registered")
    device = mqtt()
    registered_seen = ts(record["last_seen"])

    # 1. empty payload: last_seen moves forward, status stays online, no transition.
    device.publish(heartbeat_topic(device_id), b"", qos=1)
    seen1 = wait_until(lambda: (lambda d: d["status"] == "online" and ts(d["last_seen"]) > registered_seen
                                and ts(d["last_seen"]))(get_device(svc, device_id)), timeout=10)
    wait_until(lambda: db_device(svc, device_id)["last_seen_ms"] >= ms(seen1), timeout=10,
               message="last_seen was never flushed to Postgres")
    assert db_history(svc, device_id) == [(None, "online", "registered")]

    # 2. {"status":"error"}: error, reason reported_error, published retained.
    start = len(watcher.messages)
    device.publish(heartbeat_topic(device_id), {"status": "error"}, qos=1)
    _, doc = wait_status(watcher, device_id, "error", "reported_error", start=start)
    got = get_device(svc, device_id)
    assert got["status"] == "error"
    assert ts(got["last_seen"]) >= seen1
    assert ts(doc["last_seen"]) >= seen1
    assert db_device(svc, device_id)["status"] == "error"

    # 3. a plain heartbeat clears it: online, reason heartbeat.
    start = len(watcher.messages)
    device.publish(heartbeat_topic(device_id), b"", qos=1)
    _, doc = wait_status(watcher, device_id, "online", "heartbeat", start=start)
    assert get_device(svc, device_id)["status"] == "online"
    row = db_device(svc, device_id)
    assert (row["status"], row["reported_error"], row["status_reason"]) == ("online", False, "heartbeat")
    assert db_history(svc, device_id) == [
        (None, "online", "registered"),
        ("online", "error", "reported_error"),
        ("error", "online", "heartbeat"),
    ]
    # Every heartbeat was counted as MQTT (the 10 s advice is counted, not refused).
    m = metrics(svc)
    assert m[("maestra_heartbeats_total", 'transport="mqtt"')] == 3
    assert m[("maestra_frequent_heartbeats_total", "")] >= 2


def test_json_heartbeat_updates_attributes(fleet, mqtt):
    """Test whether a JSON heartbeat's firmware_version, ip_address and metadata are stored."""
    svc = fleet()
    device_id = register_http(svc, firmware_version="1.0.0")["id"]
    before = ts(get_device(svc, device_id)["last_seen"])
    mqtt().publish(heartbeat_topic(device_id), {"status": "online", "firmware_version": "1.1.0",
                                                "ip_address": "10.0.0.7", "metadata": {"rssi": -61}}, qos=1)
    got = wait_until(lambda: (lambda d: d["firmware_version"] == "1.1.0" and d)(get_device(svc, device_id)),
                     timeout=10, message=lambda: svc.log_tail(20))
    assert got["ip_address"] == "10.0.0.7"
    assert got["metadata"] == {"rssi": -61}
    assert got["status"] == "online"
    assert ts(got["last_seen"]) > before
    assert db_device(svc, device_id)["firmware_version"] == "1.1.0"


def test_http_and_mqtt_heartbeats_follow_the_same_rules(fleet, mqtt):
    """Test whether an error reported over HTTP is published retained and cleared by a plain MQTT heartbeat."""
    svc = fleet()
    device_id, watcher = registered_and_watched(svc, mqtt)

    r = svc.post("/devices/heartbeat", json={"device_id": device_id, "status": "error"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "error"
    wait_status(watcher, device_id, "error", "reported_error")

    start = len(watcher.messages)
    mqtt().publish(heartbeat_topic(device_id), b"", qos=1)
    wait_status(watcher, device_id, "online", "heartbeat", start=start)
    assert get_device(svc, device_id)["status"] == "online"
    m = metrics(svc)
    assert m[("maestra_heartbeats_total", 'transport="http"')] == 1
    assert m[("maestra_heartbeats_total", 'transport="mqtt"')] == 1
