"""Per-device order of MQTT messages: a heartbeat never overtakes an earlier
message of the same device that is still waiting to be stored (the in-place
fast path must not reorder a device's messages)."""
from __future__ import annotations

import json

from harness import wait_until


def test_plain_heartbeat_right_after_an_error_heartbeat_wins(start_service, mqtt):
    """Test whether error-then-plain heartbeats sent back to back always end online, for many devices at once."""
    svc = start_service()
    ids = [svc.post("/devices/register", json={"name": f"o{i}", "device_type": "t",
                                               "hardware_id": f"order-{i}"}).json()["id"] for i in range(30)]
    device = mqtt()
    for _ in range(3):
        for device_id in ids:
            device.client.publish(f"maestra/devices/{device_id}/heartbeat", json.dumps({"status": "error"}), qos=1)
            device.client.publish(f"maestra/devices/{device_id}/heartbeat", b"", qos=1)
    last = device.client.publish(f"maestra/devices/{ids[-1]}/heartbeat", b"", qos=1)
    last.wait_for_publish(10)

    def settled():
        statuses = {d["id"]: d["status"] for d in svc.get("/devices").json()}
        return all(statuses[i] == "online" for i in ids) and statuses

    statuses = wait_until(settled, timeout=10, message=lambda: str(svc.get("/devices").json()))
    assert set(statuses.values()) == {"online"}


def test_heartbeat_right_after_a_will_brings_the_device_back(start_service, mqtt):
    """Test whether a heartbeat published right after a will (same device, same connection) ends online."""
    svc = start_service()
    ids = [svc.post("/devices/register", json={"name": f"w{i}", "device_type": "t",
                                               "hardware_id": f"will-order-{i}"}).json()["id"] for i in range(20)]
    device = mqtt()
    for device_id in ids:
        device.client.publish(f"maestra/devices/{device_id}/presence", b"offline", qos=1)
        device.client.publish(f"maestra/devices/{device_id}/heartbeat", b"", qos=1)
    device.client.publish(f"maestra/devices/{ids[-1]}/heartbeat", b"", qos=1).wait_for_publish(10)
    wait_until(lambda: all(d["status"] == "online" for d in svc.get("/devices").json()), timeout=10,
               message=lambda: str([d["status"] for d in svc.get("/devices").json()]))
