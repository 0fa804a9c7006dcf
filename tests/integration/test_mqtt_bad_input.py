"""Bad MQTT input never hurts anyone else. On a private broker (so that the
rejection counters see only this test's messages) a well-behaved device keeps
heartbeating while the service is fed a non-UUID id in a topic, an unknown UUID,
malformed JSON, wrong-typed JSON, a payload over 64 KiB, garbage presence and
registrations with missing fields / bad JSON. Each is dropped (or answered with
an error reply, for registration), counted in maestra_rejected_total by reason,
nothing is written for it, and the service stays healthy.
"""
from __future__ import annotations

import json
import uuid

from test_mqtt_common import (
    db_count,
    db_device,
    db_history,
    fleet,  # noqa: F401 - the fixture
    get_device,
    health,
    heartbeat_topic,
    metrics,
    payload_json,
    presence_topic,
    register_http,
    register_topic,
    registration_topic,
    rejected,
    retained_now,
    status_topic,
    ts,
    wait_metric,
    wait_status,
)
from harness import psql_value, wait_until

OVER_64_KIB = 65536 + 1


def test_bad_input_is_dropped_while_a_good_device_keeps_working(start_broker, fleet, mqtt):
    """Test whether malformed topics and payloads are dropped and counted while a good device keeps working."""
    broker = start_broker()
    svc = fleet(broker=broker)
    good = register_http(svc, name="Good device")["id"]
    victim_record = register_http(svc, name="Victim", firmware_version="1.0.0")  # bad payloads on its topics
    victim = victim_record["id"]
    watcher = mqtt(broker=broker, subscribe="maestra/devices/+/status")
    wait_status(watcher, good, "online", "registered")
    wait_status(watcher, victim, "online", "registered")
    good_client = mqtt(broker=broker)
    attacker = mqtt(broker=broker)
    replies = mqtt(broker=broker, subscribe="maestra/hardware/+/registration")
    before = rejected(svc)
    messages_before = metrics(svc)[("maestra_mqtt_messages_total", "")]

    def good_heartbeat_refreshes() -> None:
        seen = ts(get_device(svc, good)["last_seen"])
        good_client.publish(heartbeat_topic(good), b"", qos=1)
        wait_until(lambda: ts(get_device(svc, good)["last_seen"]) > seen, timeout=10,
                   message=lambda: "the good device's heartbeat was not applied\n" + svc.log_tail(20))

    good_heartbeat_refreshes()
    unknown = str(uuid.uuid4())
    big = json.dumps({"status": "online", "metadata": {"pad": "x" * OVER_64_KIB}})
    bad_hw = [f"bad-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    expected = {
        "bad_topic": 2,        # non-UUID ids in heartbeat and presence topics
        "unknown_device": 2,   # a well-formed UUID nobody registered: heartbeat and presence
        "malformed": 3,        # heartbeat JSON, presence garbage, registration JSON
        "invalid_field": 4,    # {"status":5}, {"status":"sleeping"}, firmware_version 7, registration without name
        "too_large": 2,        # heartbeat and registration payloads over 64 KiB
    }
    attacker.publish("maestra/devices/not-a-uuid/heartbeat", b"", qos=1)
    attacker.publish("maestra/devices/1234/presence", b"offline", qos=1)
    attacker.publish(heartbeat_topic(unknown), {"status": "error"}, qos=1)
    attacker.publish(presence_topic(unknown), b"offline", qos=1)
    attacker.publish(heartbeat_topic(victim), b"{\"status\": \"error\"", qos=1)
    attacker.publish(presence_topic(victim), b"maybe", qos=1)
    attacker.publish(heartbeat_topic(victim), {"status": 5}, qos=1)
    attacker.publish(heartbeat_topic(victim), {"status": "sleeping"}, qos=1)
    attacker.publish(heartbeat_topic(victim), {"status": "error", "firmware_version": 7}, qos=1)
    attacker.publish(heartbeat_topic(victim), big.encode(), qos=1)
    good_heartbeat_refreshes()  # interleaved with the bad input
    attacker.publish(register_topic(bad_hw[0]), {"device_type": "esp32"}, qos=1)
    attacker.publish(register_topic(bad_hw[1]), b"{nope", qos=1)
    attacker.publish(register_topic(bad_hw[2]), json.dumps({"name": "x" * OVER_64_KIB,
                                                            "device_type": "esp32"}).encode(), qos=1)

    # Every bad message was seen and counted, by reason.
    want = {reason: before[reason] + n for reason, n in expected.items()}
    got = wait_metric(svc, lambda: rejected(svc), lambda r: all(r[k] >= v for k, v in want.items()),
                      what="rejection counters")
    assert {k: got[k] for k in want} == want
    assert {k: got[k] - before[k] for k in got if k not in want} == {"conflict": 0, "stale_will": 0,
                                                                     "unauthorized": 0, "throttled": 0}
    assert metrics(svc)[("maestra_mqtt_messages_total", "")] >= messages_before + 13

    # Registrations: error replies naming the problem; nothing written.
    missing = payload_json(replies.wait_for(registration_topic(bad_hw[0]), timeout=10))
    assert (missing["error"], missing["field"]) == ("invalid_field", "name")
    malformed = payload_json(replies.wait_for(registration_topic(bad_hw[1]), timeout=10))
    assert malformed["error"] == "malformed_json"
    assert db_count(svc) == 2
    assert db_count(svc, "hardware_id LIKE 'bad-%'") == 0

    # Nothing was written for the victim: status, last_seen, firmware, history unchanged.
    row = db_device(svc, victim)
    assert (row["status"], row["connected"], row["reported_error"], row["firmware_version"]) == \
        ("online", True, False, "1.0.0")
    got_victim = get_device(svc, victim)
    assert got_victim["status"] == "online"
    assert got_victim["last_seen"] == victim_record["last_seen"]
    assert db_history(svc, victim) == [(None, "online", "registered")]
    assert [payload_json(m)["status"] for m in watcher.received(status_topic(victim))] == ["online"]
    assert retained_now(mqtt, f"maestra/devices/{unknown}/status", broker=broker) == []
    assert psql_value(svc.database_url, f"SELECT count(*) FROM devices WHERE id = '{unknown}'") == "0"

    # The service is healthy and the good device still works.
    assert health(svc) == {"status": "ok", "database": "ok", "mqtt": "connected", "devices": 2}
    assert svc.is_running()
    good_heartbeat_refreshes()
    good_client.publish(heartbeat_topic(good), {"status": "error"}, qos=1)
    wait_status(watcher, good, "error", "reported_error")
    # Logged at most once a minute per reason, not once per message.
    assert svc.log_text().count("reason=invalid_field") == 1
