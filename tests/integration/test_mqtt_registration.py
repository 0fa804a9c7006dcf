"""Registration over MQTT: maestra/hardware/{hw}/register answered on
maestra/hardware/{hw}/registration (or on the MQTT v5 Response Topic with the
Correlation Data echoed), the row in Postgres, the retained `online` status
document (reason `registered`), the conflict reply carrying the existing id, and
validation errors that name the field and write nothing.
Real Mosquitto (the session broker, default prefix `maestra`), real Postgres,
paho-mqtt clients speaking MQTT 5 and 3.1.1.
"""
from __future__ import annotations

import uuid

from harness import psql_value, wait_until
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from test_mqtt_common import (
    check_status_document,
    db_count,
    db_device,
    db_history,
    device_body,
    get_device,
    new_hardware_id,
    payload_json,
    register_topic,
    registration_topic,
    retained_now,
    fleet,  # noqa: F401 - the fixture
    status_topic,
    ts,
)


def register_over_mqtt(client, hardware_id: str, body: dict, timeout: float = 10.0) -> dict:
    """Publish a registration and return the JSON reply on the default reply topic."""
    reply_topic = registration_topic(hardware_id)
    start = len(client.messages)
    client.subscribe(reply_topic)
    client.publish(register_topic(hardware_id), body, qos=1)
    return payload_json(client.wait_for(reply_topic, timeout=timeout, start=start))


def test_register_over_mqtt_replies_stores_and_publishes_retained_status(fleet, mqtt):
    """Test whether a registration over MQTT is answered with the device record, stored, and published retained online."""
    svc = fleet()
    hw = new_hardware_id("esp32")
    body = device_body(hw, firmware_version="2.1.0", ip_address="192.168.1.50",
                       metadata={"room": "lab"}, location={"site": "A"})
    reply = register_over_mqtt(mqtt(), hw, body)

    assert reply["hardware_id"] == hw
    assert reply["name"] == body["name"] and reply["device_type"] == "esp32"
    assert reply["status"] == "online"
    assert reply["firmware_version"] == "2.1.0" and reply["metadata"] == {"room": "lab"}
    device_id = str(uuid.UUID(reply["id"]))
    assert device_id == reply["id"]

    row = db_device(svc, device_id)
    assert row is not None and row["hardware_id"] == hw
    assert (row["status"], row["connected"], row["status_reason"]) == ("online", True, "registered")
    assert db_history(svc, device_id) == [(None, "online", "registered")]
    assert get_device(svc, device_id)["status"] == "online"

    # The reply and the status come from different threads: wait for the status to be retained.
    retained = wait_until(lambda: retained_now(mqtt, status_topic(device_id), strict=False), timeout=10)
    assert len(retained) == 1, [m.payload for m in retained]
    doc = payload_json(retained[0])
    check_status_document(doc, reply)
    assert (doc["status"], doc["reason"]) == ("online", "registered")
    assert ts(doc["changed_at"]) == ts(reply["status_changed_at"])


def test_register_v5_response_topic_and_correlation_data(fleet, mqtt):
    """Test whether an MQTT v5 registration with a Response Topic is answered there with the Correlation Data echoed."""
    svc = fleet()
    hw = new_hardware_id("pi")
    client = mqtt(protocol=5)
    response_topic = f"test/replies/{uuid.uuid4().hex}"
    client.subscribe(response_topic)
    client.subscribe(registration_topic(hw))
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = b"\x00corr-42\xff"
    client.publish(register_topic(hw), device_body(hw), qos=1, properties=props)

    message = client.wait_for(response_topic, timeout=10)
    reply = payload_json(message)
    assert reply["hardware_id"] == hw and reply["status"] == "online"
    assert getattr(message.properties, "CorrelationData", None) == b"\x00corr-42\xff"
    assert db_device(svc, reply["id"])["status"] == "online"

    # A second request with another correlation: a conflict, answered on the response topic too.
    props2 = Properties(PacketTypes.PUBLISH)
    props2.ResponseTopic = response_topic
    props2.CorrelationData = b"second"
    start = len(client.messages)
    client.publish(register_topic(hw), device_body(hw), qos=1, properties=props2)
    again = client.wait_for(response_topic, start=start, timeout=10)
    assert getattr(again.properties, "CorrelationData", None) == b"second"
    conflict = payload_json(again)
    assert (conflict["error"], conflict["id"]) == ("conflict", reply["id"]), conflict
    # Both replies went to the response topic, none to the default reply topic.
    assert client.received(registration_topic(hw)) == []


def test_register_v311_client_without_hardware_id_in_body(fleet, mqtt):
    """Test whether an MQTT 3.1.1 registration whose body omits hardware_id takes it from the topic."""
    svc = fleet()
    hw = new_hardware_id("arduino")
    client = mqtt(protocol=311)
    reply = register_over_mqtt(client, hw, {"name": "Uno", "device_type": "arduino"})
    assert reply["hardware_id"] == hw and reply["status"] == "online"
    assert db_device(svc, reply["id"])["hardware_id"] == hw


def test_duplicate_hardware_id_gets_conflict_with_existing_id(fleet, mqtt):
    """Test whether registering a hardware id twice over MQTT replies conflict with the existing id and stores nothing new."""
    svc = fleet()
    hw = new_hardware_id("dup")
    client = mqtt()
    first = register_over_mqtt(client, hw, device_body(hw))
    second = register_over_mqtt(client, hw, device_body(hw, name="Another name"))
    assert second["error"] == "conflict"
    assert second["id"] == first["id"]
    assert db_count(svc, f"hardware_id = '{hw}'") == 1
    assert get_device(svc, first["id"])["name"] == f"Test {hw}"
    assert db_history(svc, first["id"]) == [(None, "online", "registered")]
    # The same conflict over HTTP (one rule, two protocols).
    r = svc.post("/devices/register", json=device_body(hw))
    assert r.status_code == 409 and r.json()["id"] == first["id"]


def test_registration_with_missing_fields_is_refused_and_writes_nothing(fleet, mqtt):
    """Test whether a registration missing required fields gets an error reply naming the field and writes nothing."""
    svc = fleet()
    client = mqtt()
    cases = [
        ({"device_type": "esp32"}, "name"),
        ({"name": "No type"}, "device_type"),
        ({"name": "", "device_type": "esp32"}, "name"),
        ({"name": "Wrong", "device_type": "esp32", "hardware_id": "not-the-topic"}, "hardware_id"),
        ({"name": "Bad ip", "device_type": "esp32", "ip_address": "999.1.1.1"}, "ip_address"),
    ]
    hardware_ids = []
    for body, field in cases:
        hw = new_hardware_id("bad")
        hardware_ids.append(hw)
        reply = register_over_mqtt(client, hw, body)
        assert reply.get("error") == "invalid_field", (body, reply)
        assert reply.get("field") == field, (body, reply)
        assert field in reply.get("detail", ""), (body, reply)
        assert "id" not in reply

    hw = new_hardware_id("bad")
    hardware_ids.append(hw)
    reply = register_over_mqtt(client, hw, b"{not json")
    assert reply.get("error") == "malformed_json", reply

    assert db_count(svc) == 0
    assert psql_value(svc.database_url, "SELECT count(*) FROM device_status_history") == "0"
    listed = svc.get("/devices").json()
    assert [d for d in listed if d["hardware_id"] in hardware_ids] == []


def test_hardware_id_from_the_topic_follows_the_http_rule(fleet, mqtt):
    """Test whether over-long and blank hardware ids taken from the topic are refused like over HTTP, writing nothing."""
    svc = fleet()
    client = mqtt()
    body = {"name": "Topic id", "device_type": "esp32"}  # no hardware_id: the topic's is used
    for hw in ["x" * 129, "y" * 3000, " ", "\u00a0", "\u200b"]:
        reply = register_over_mqtt(client, hw, body)
        assert reply.get("error") == "invalid_field" and reply.get("field") == "hardware_id", (hw[:20], reply)
        http = svc.post("/devices/register", json={**body, "hardware_id": hw})
        assert http.status_code == 422 and http.json()["field"] == "hardware_id", (hw[:20], http.text)
    assert db_count(svc) == 0
    ok = register_over_mqtt(client, "z" * 128, body)
    assert ok.get("hardware_id") == "z" * 128, ok
