"""Presence on maestra/devices/{id}/presence: births and last wills. A will sent
by the broker marks the device `offline` (reason `will`), an explicit
{"state":"offline","reason":"disconnect"} gives reason `disconnect`, a will of
an older session arriving after a newer birth is ignored, presence never
overrides `maintenance` (clearing it recomputes the status), and a silent device
times out (reason `timeout`) within offline_after + 1 s. Each transition is
checked in Postgres, over HTTP and on the retained status topic.
"""
from __future__ import annotations

import json

from test_mqtt_common import (
    db_device,
    db_history,
    fleet,  # noqa: F401 - the fixture
    get_device,
    heartbeat_topic,
    metrics,
    patch_device,
    payload_json,
    presence_topic,
    register_http,
    registered_and_watched,
    rejected,
    restart_ready,
    retained_now,
    status_docs,
    status_topic,
    ts,
    wait_metric,
    wait_status,
)
from harness import wait_until


def clear_retained(client, topic: str) -> None:
    client.publish(topic, b"", qos=1, retain=True)


def test_will_marks_device_offline_and_birth_brings_it_back(fleet, mqtt):
    """Test whether a device's will marks it offline (reason will) and its next birth marks it online."""
    svc = fleet()
    device_id, watcher = registered_and_watched(svc, mqtt)
    presence = presence_topic(device_id)

    device = mqtt(will=(presence, b"offline", 1, True))
    device.publish(presence, b"online", qos=1, retain=True)
    device.drop()  # vanishes without DISCONNECT: the broker publishes the will
    _, doc = wait_status(watcher, device_id, "offline", "will")
    assert get_device(svc, device_id)["status"] == "offline"
    row = db_device(svc, device_id)
    assert (row["status"], row["connected"], row["status_reason"]) == ("offline", False, "will")
    assert retained_now(mqtt, presence)[0].payload == b"offline"

    start = len(watcher.messages)
    again = mqtt(will=(presence, b"offline", 1, True))
    again.publish(presence, b"online", qos=1, retain=True)
    wait_status(watcher, device_id, "online", "heartbeat", start=start)
    assert get_device(svc, device_id)["status"] == "online"
    assert db_history(svc, device_id) == [
        (None, "online", "registered"), ("online", "offline", "will"), ("offline", "online", "heartbeat")]
    again.disconnect()
    clear_retained(mqtt(), presence)


def test_old_session_will_after_new_birth_is_ignored(fleet, mqtt):
    """Test whether a will from an older session that arrives after a newer birth is ignored."""
    svc = fleet()
    device_id, watcher = registered_and_watched(svc, mqtt)
    presence = presence_topic(device_id)
    device = mqtt()
    stale_before = rejected(svc)["stale_will"]

    device.publish(presence, {"state": "online", "session": 2}, qos=1, retain=True)
    device.publish(presence, {"state": "offline", "session": 1}, qos=1, retain=True)  # late will of session 1
    # The stale will was processed (counted) and changed nothing.
    wait_metric(svc, lambda: rejected(svc)["stale_will"], lambda v: v == stale_before + 1, what="stale_will")
    assert get_device(svc, device_id)["status"] == "online"
    row = db_device(svc, device_id)
    assert (row["status"], row["connected"]) == ("online", True)
    assert [d["status"] for d in status_docs(watcher, device_id)] == ["online"]

    # The will of the current session counts.
    device.publish(presence, {"state": "offline", "session": 2}, qos=1, retain=True)
    wait_status(watcher, device_id, "offline", "will")
    assert get_device(svc, device_id)["status"] == "offline"
    assert db_history(svc, device_id) == [(None, "online", "registered"), ("online", "offline", "will")]
    clear_retained(device, presence)


def test_explicit_offline_disconnect_gives_reason_disconnect(fleet, mqtt):
    """Test whether an explicit {"state":"offline","reason":"disconnect"} marks the device offline with reason disconnect."""
    svc = fleet()
    device_id, watcher = registered_and_watched(svc, mqtt)
    presence = presence_topic(device_id)
    device = mqtt(will=(presence, json.dumps({"state": "offline", "session": 7}), 1, True))
    device.publish(presence, {"state": "online", "session": 7}, qos=1, retain=True)
    device.publish(presence, {"state": "offline", "session": 7, "reason": "disconnect"}, qos=1, retain=True)
    device.disconnect()  # clean: the broker discards the will
    _, doc = wait_status(watcher, device_id, "offline", "disconnect")
    assert doc["device_id"] == device_id
    row = db_device(svc, device_id)
    assert (row["status"], row["status_reason"]) == ("offline", "disconnect")
    assert get_device(svc, device_id)["status"] == "offline"
    clear_retained(mqtt(), presence)


def test_presence_never_overrides_maintenance(fleet, mqtt):
    """Test whether a will during maintenance keeps the status maintenance and clearing maintenance recomputes offline."""
    svc = fleet()
    device_id, watcher = registered_and_watched(svc, mqtt)
    presence = presence_topic(device_id)

    assert patch_device(svc, device_id, {"status": "maintenance"})["status"] == "maintenance"
    wait_status(watcher, device_id, "maintenance", "admin")

    device = mqtt(will=(presence, b"offline", 1, True))
    device.publish(presence, b"online", qos=1, retain=True)
    device.drop()
    # The will is applied underneath (connected=false is stored) but the status stays maintenance.
    wait_until(lambda: db_device(svc, device_id)["connected"] is False, timeout=10,
               message=lambda: f"will never applied: {db_device(svc, device_id)}\n{svc.log_tail(20)}")
    row = db_device(svc, device_id)
    assert (row["status"], row["maintenance"]) == ("maintenance", True)
    assert get_device(svc, device_id)["status"] == "maintenance"
    # Heartbeats refresh last_seen but never flip maintenance either.
    seen = ts(get_device(svc, device_id)["last_seen"])
    mqtt().publish(heartbeat_topic(device_id), {"status": "error"}, qos=1)
    wait_until(lambda: ts(get_device(svc, device_id)["last_seen"]) > seen, timeout=10)
    assert get_device(svc, device_id)["status"] == "maintenance"
    assert [d["status"] for d in status_docs(watcher, device_id)] == ["online", "maintenance"]

    # Clearing maintenance recomputes from presence. The heartbeat above reconnected
    # the device, so drop it again first: will -> offline underneath.
    dev2 = mqtt(will=(presence, b"offline", 1, True))
    dev2.publish(presence, b"online", qos=1, retain=True)
    dev2.drop()
    wait_until(lambda: db_device(svc, device_id)["connected"] is False, timeout=10)
    start = len(watcher.messages)
    assert patch_device(svc, device_id, {"status": "online"})["status"] == "offline"
    _, doc = wait_status(watcher, device_id, "offline", "admin", start=start)
    assert get_device(svc, device_id)["status"] == "offline"
    assert db_history(svc, device_id) == [
        (None, "online", "registered"), ("online", "maintenance", "admin"), ("maintenance", "offline", "admin")]
    clear_retained(mqtt(), presence)


def test_silent_device_times_out_within_offline_after_plus_one_second(fleet, mqtt):
    """Test whether a silent device is marked offline (reason timeout) no later than offline_after + 1 s."""
    svc = fleet()
    record = register_http(svc, offline_after=1)
    device_id = record["id"]
    watcher = mqtt(subscribe=status_topic(device_id))
    _, doc = wait_status(watcher, device_id, "offline", "timeout", timeout=10)
    silent_for = (ts(doc["changed_at"]) - ts(record["last_seen"])).total_seconds()
    assert 1.0 <= silent_for <= 2.0, silent_for
    assert get_device(svc, device_id)["status"] == "offline"
    assert db_device(svc, device_id)["status_reason"] == "timeout"
    retained = retained_now(mqtt, status_topic(device_id))
    assert [payload_json(m)["reason"] for m in retained] == ["timeout"]


def test_old_session_will_is_ignored_across_a_service_restart(fleet, mqtt):
    """Test whether a will of an older session is still ignored when it arrives after the service restarted."""
    svc = fleet()
    device_id, watcher = registered_and_watched(svc, mqtt)
    presence = presence_topic(device_id)
    device = mqtt()
    device.publish(presence, {"state": "online", "session": 2}, qos=1)
    wait_until(lambda: ts(get_device(svc, device_id)["last_seen"]) > ts(get_device(svc, device_id)["created_at"]),
               timeout=10, message="the birth was never applied")
    restart_ready(svc, mqtt)

    device.publish(presence, {"state": "offline", "session": 1}, qos=1)  # the late will of session 1
    # Wait until the will was handled one way or the other, then judge.
    wait_until(lambda: rejected(svc)["stale_will"] >= 1 or get_device(svc, device_id)["status"] != "online",
               timeout=10, message=lambda: "the will was never handled\n" + svc.log_tail(20))
    got = get_device(svc, device_id)
    assert got["status"] == "online", (
        f"the will of session 1 was applied after the restart although session 2 was born: {got['status']}, "
        f"history {db_history(svc, device_id)}")
    assert rejected(svc)["stale_will"] == 1
    assert [d["status"] for d in status_docs(watcher, device_id)] == ["online"]


def test_flapping_device_is_recorded_once_it_settles(fleet, mqtt):
    """Test whether a device that drops and reconnects every half second does not flood the history and the
    retained status: its first three changes are stored, the rest are held and counted, and once it holds
    for the settle time (10 s) one row with the last reason is stored and published."""
    import time

    svc = fleet()
    device_id, watcher = registered_and_watched(svc, mqtt)
    presence = presence_topic(device_id)
    for _ in range(6):  # will, birth, will, birth, ...: 12 changes in about 6 s
        device = mqtt(will=(presence, b"offline", 1, True))
        device.publish(presence, b"online", qos=1, retain=True)
        time.sleep(0.25)
        device.drop()
        time.sleep(0.25)
    device = mqtt(will=(presence, b"offline", 1, True))
    device.publish(presence, b"online", qos=1, retain=True)  # and it stays
    time.sleep(1.0)
    rows = db_history(svc, device_id)
    assert len(rows) <= 4, rows  # registered + the first three changes; the rest held
    wait_metric(svc, lambda: metrics(svc).get(("maestra_flap_changes_held_total", ""), 0), lambda v: v >= 8)
    # Settled: online again, one row, published retained.
    wait_until(lambda: db_history(svc, device_id)[-1] == ("offline", "online", "heartbeat"), timeout=15)
    rows = db_history(svc, device_id)
    assert len(rows) == 5, rows
    assert db_device(svc, device_id)["status"] == "online"
    wait_status(watcher, device_id, "online", "heartbeat")
    assert payload_json(retained_now(mqtt, status_topic(device_id))[0])["status"] == "online"
    assert "device_settled" in svc.log_text() and "device_flapping" in svc.log_text()
    device.disconnect()
    clear_retained(mqtt(), presence)
