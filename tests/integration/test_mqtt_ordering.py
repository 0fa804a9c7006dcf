"""Per-device order of MQTT messages: a heartbeat never overtakes an earlier
message of the same device that is still waiting to be stored (the in-place
fast path must not reorder a device's messages).

Each test checks what the messages did, not only the final status (which is
`online` from the registration alone): every heartbeat is counted in
maestra_heartbeats_total, every device's history holds exactly the transitions
the messages caused, in the order sent, and last_seen moved past the
registration. A service that hears nothing fails them.
"""
from __future__ import annotations

import json

from test_mqtt_common import (
    fleet,  # noqa: F401 - the fixture
    get_device,
    heartbeat_topic,
    metrics,
    presence_topic,
    register_http,
    ts,
    wait_metric,
)
from harness import wait_until

REGISTERED = (None, "online", "registered")


def counters(svc) -> dict[str, float]:
    """MQTT heartbeats accepted and stored transitions by reason."""
    m = metrics(svc)
    out = {"heartbeats": m[("maestra_heartbeats_total", 'transport="mqtt"')]}
    for (name, labels), value in m.items():
        if name == "maestra_status_transitions_total":
            out[labels.split('"')[1]] = value
    return out


def history(svc, device_id: str) -> list[tuple[str | None, str, str]]:
    """GET /devices/{id}/history as (from, to, reason), oldest first."""
    r = svc.get(f"/devices/{device_id}/history", params={"limit": 100})
    assert r.status_code == 200, r.text
    return [(e["from"], e["to"], e["reason"]) for e in reversed(r.json())]


def check_effects(svc, records: list[dict], before: dict[str, float], heartbeats: int,
                  transitions: dict[str, int], expected_history: list) -> None:
    """The heartbeats were all accepted, the transitions all stored, every device
    ends online with exactly expected_history, and its last_seen moved on."""
    want = {"heartbeats": before["heartbeats"] + heartbeats,
            **{reason: before[reason] + n for reason, n in transitions.items()}}
    wait_metric(svc, lambda: (lambda now: {k: now[k] for k in want})(counters(svc)), lambda now: now == want, timeout=30,
                what=f"heartbeat and transition counters (want {want})")
    for record in records:
        device_id = record["id"]
        wait_until(lambda: history(svc, device_id) == expected_history, timeout=10,
                   message=lambda: f"history of {device_id}: {history(svc, device_id)}\n"
                                   f"expected: {expected_history}")
        device = get_device(svc, device_id)
        assert device["status"] == "online", device
        assert ts(device["last_seen"]) > ts(record["last_seen"]), (record, device)


def test_plain_heartbeat_right_after_an_error_heartbeat_wins(fleet, mqtt):
    """Test whether error-then-plain heartbeats sent back to back are applied in order, for many devices at once."""
    svc = fleet()
    records = [register_http(svc, f"order-{i}", name=f"o{i}", device_type="t") for i in range(30)]
    before = counters(svc)
    device = mqtt()
    rounds = 3
    for _ in range(rounds):
        for record in records:
            device.client.publish(heartbeat_topic(record["id"]), json.dumps({"status": "error"}), qos=1)
            device.client.publish(heartbeat_topic(record["id"]), b"", qos=1)
    device.client.publish(heartbeat_topic(records[-1]["id"]), b"", qos=1).wait_for_publish(10)

    # Six changes per device in a moment is flapping: the first three are stored
    # as they come (error, online, error); the rest are held until the status has
    # held 10 s and then stored as one change, error -> online (docs/protocol.md,
    # "Flapping"). Had the service applied any pair out of order, the device
    # would have settled in error.
    pair = [("online", "error", "reported_error"), ("error", "online", "heartbeat")]
    check_effects(svc, records, before,
                  heartbeats=2 * rounds * len(records) + 1,
                  transitions={"reported_error": 2 * len(records), "heartbeat": 2 * len(records)},
                  expected_history=[REGISTERED] + pair * 2)


def test_heartbeat_right_after_a_will_brings_the_device_back(fleet, mqtt):
    """Test whether a heartbeat published right after a will (same device, same connection) is applied after it."""
    svc = fleet()
    records = [register_http(svc, f"will-order-{i}", name=f"w{i}", device_type="t") for i in range(20)]
    before = counters(svc)
    device = mqtt()
    for record in records:
        device.client.publish(presence_topic(record["id"]), b"offline", qos=1)
        device.client.publish(heartbeat_topic(record["id"]), b"", qos=1)
    device.client.publish(heartbeat_topic(records[-1]["id"]), b"", qos=1).wait_for_publish(10)

    check_effects(svc, records, before,
                  heartbeats=len(records) + 1,
                  transitions={"will": len(records), "heartbeat": len(records)},
                  expected_history=[REGISTERED, ("online", "offline", "will"), ("offline", "online", "heartbeat")])
