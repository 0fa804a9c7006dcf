"""The service's own retained topics, on a private broker per test:
maestra/fleet/summary (counts per status, consistent with GET /devices and
/metrics, published at most once a second) and maestra/fleet/status (the
service's birth `online` while it runs; its will `offline` when it is
SIGKILLed; an explicit `offline` when it stops gracefully).
"""
from __future__ import annotations

from collections import Counter

from test_mqtt_common import (
    fleet,  # noqa: F401 - the fixture
    fleet_status_topic,
    fleet_summary_topic,
    heartbeat_topic,
    metrics,
    patch_device,
    payload_json,
    presence_topic,
    register_http,
    retained_now,
    stop_service,
    ts,
    wait_mqtt_ready,
    wait_status,
)
from harness import wait_until

STATUSES = ("online", "offline", "error", "maintenance")


def summary_counts(doc: dict) -> dict:
    return {k: doc[k] for k in (*STATUSES, "total")}


def http_counts(svc) -> dict:
    listed = svc.get("/devices").json()
    counts = Counter(d["status"] for d in listed)
    return {**{s: counts.get(s, 0) for s in STATUSES}, "total": len(listed)}


def test_fleet_summary_counts_match_devices(start_broker, fleet, mqtt):
    """Test whether the retained fleet summary counts devices per status as GET /devices does."""
    broker = start_broker()
    svc = fleet(broker=broker)
    watcher = mqtt(broker=broker, subscribe=[fleet_summary_topic(), "maestra/devices/+/status"])
    ids = [register_http(svc)["id"] for _ in range(5)]
    device = mqtt(broker=broker)
    device.publish(heartbeat_topic(ids[0]), {"status": "error"}, qos=1)
    patch_device(svc, ids[1], {"status": "maintenance"})
    device.publish(presence_topic(ids[2]), b"offline", qos=1)
    device.publish(presence_topic(ids[3]), b"offline", qos=1)
    wait_status(watcher, ids[0], "error")
    wait_status(watcher, ids[1], "maintenance")
    wait_status(watcher, ids[2], "offline")
    wait_status(watcher, ids[3], "offline")
    expected = {"online": 1, "offline": 2, "error": 1, "maintenance": 1, "total": 5}
    assert http_counts(svc) == expected

    watcher.wait_for(fleet_summary_topic(), lambda m: summary_counts(payload_json(m)) == expected, timeout=10)
    retained = retained_now(mqtt, fleet_summary_topic(), broker=broker)
    assert len(retained) == 1
    doc = payload_json(retained[0])
    assert summary_counts(doc) == expected
    ts(doc["at"])
    m = metrics(svc)
    assert {s: m[("maestra_devices", f'status="{s}"')] for s in STATUSES} == {s: expected[s] for s in STATUSES}

    # A deletion is counted too.
    assert svc.delete(f"/devices/{ids[2]}").status_code == 204
    after = {**expected, "offline": 1, "total": 4}
    watcher.wait_for(fleet_summary_topic(), lambda m: summary_counts(payload_json(m)) == after, timeout=10)
    assert summary_counts(payload_json(retained_now(mqtt, fleet_summary_topic(), broker=broker)[0])) == after

    # At most once a second: live summaries are at least 1 s apart.
    live = [ts(payload_json(m)["at"]) for m in watcher.received(fleet_summary_topic()) if not m.retain]
    gaps = [(b - a).total_seconds() for a, b in zip(live, live[1:])]
    assert all(g >= 1.0 for g in gaps), gaps


def test_fleet_status_online_then_offline_on_kill_and_stop(start_broker, fleet, mqtt):
    """Test whether maestra/fleet/status is online while the service runs and offline after SIGKILL (will) or SIGTERM."""
    broker = start_broker()
    svc = fleet(broker=broker)
    topic = fleet_status_topic()
    retained = wait_until(lambda: retained_now(mqtt, topic, broker=broker, strict=False), timeout=10)
    assert len(retained) == 1
    birth = payload_json(retained[0])
    assert birth["status"] == "online"
    ts(birth["since"])

    watcher = mqtt(broker=broker, subscribe=topic)
    start = len(watcher.messages)
    svc.kill()  # a crash: the broker publishes the service's will
    will = payload_json(watcher.wait_for(topic, lambda m: payload_json(m)["status"] == "offline",
                                         start=start, timeout=10))
    assert will == {"status": "offline", "since": None}
    assert [payload_json(m) for m in retained_now(mqtt, topic, broker=broker)] == [will]

    start = len(watcher.messages)
    svc.start()
    wait_mqtt_ready(svc, mqtt, broker=broker)
    reborn = payload_json(watcher.wait_for(topic, lambda m: payload_json(m)["status"] == "online",
                                           start=start, timeout=10))
    assert ts(reborn["since"]) > ts(birth["since"])

    start = len(watcher.messages)
    assert stop_service(svc) == 0
    goodbye = payload_json(watcher.wait_for(topic, lambda m: payload_json(m)["status"] == "offline",
                                            start=start, timeout=10))
    assert ts(goodbye["since"]) >= ts(reborn["since"])
    assert [payload_json(m)["status"] for m in retained_now(mqtt, topic, broker=broker)] == ["offline"]
