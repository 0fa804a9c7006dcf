"""Commands to devices (docs/protocol.md "Commands"), against the real broker
and Postgres: each state and how it is reached, delivery in creation order to
a device that comes back, expiry, result timeouts, cancel, idempotency keys,
fan-out, replies that must be ignored, the HTTP long poll, bad input, and
nothing lost across a service kill -9 or a broker restart.

Every test reads what happened (the stored history, the messages the device
got, the counters), not only a final state.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import requests

from fault_proxy import FaultProxy
from harness import psql_value, wait_until
from test_mqtt_common import (
    fleet,  # noqa: F401 - the fixture
    get_device,
    metrics,
    mqtt_messages_total,
    presence_topic,
    register_http,
    wait_mqtt_ready,
)

PREFIX = "maestra"


def commands_filter(device_id: str) -> str:
    return f"{PREFIX}/devices/{device_id}/commands/+"


def reply_topic(device_id: str, command_id: str) -> str:
    return f"{PREFIX}/devices/{device_id}/replies/{command_id}"


class Device:
    """A device on MQTT: will and birth on its presence topic, subscribed to its
    commands before it says it is online, recording what it receives."""

    def __init__(self, mqtt, device_id: str, broker=None, protocol=5):
        self.id = device_id
        self.client = mqtt(broker=broker, protocol=protocol,
                           will=(presence_topic(device_id), "offline", 1, True))
        self.client.subscribe(commands_filter(device_id))
        self.client.publish(presence_topic(device_id), "online", qos=1, retain=True)

    def commands(self) -> list[dict]:
        return [json.loads(m.payload) for m in self.client.received(commands_filter(self.id))]

    def command_ids(self) -> list[str]:
        return [c["id"] for c in self.commands()]

    def wait_commands(self, count: int, timeout: float = 10.0) -> list[dict]:
        wait_until(lambda: len(self.commands()) >= count, timeout=timeout,
                   message=lambda: f"device {self.id} got {self.command_ids()}")
        return self.commands()

    def reply(self, command_id: str, state: str, device_id: str | None = None, **extra) -> None:
        self.client.publish(reply_topic(device_id or self.id, command_id), {"state": state, **extra}, qos=1)


def send(svc, device_id: str, name: str = "reboot", expect: int = 201, headers=None, query=None, **body):
    """POST /devices/{id}/commands with {"name", **body}; asserts the status, returns the document."""
    r = svc.post(f"/devices/{device_id}/commands", json={"name": name, **body}, headers=headers or {},
                 params=query or {})
    assert r.status_code == expect, r.text
    return r.json()


def command(svc, command_id: str) -> dict:
    r = svc.get(f"/commands/{command_id}")
    assert r.status_code == 200, r.text
    return r.json()


def states(svc, command_id: str) -> list[str]:
    return [h["to"] for h in command(svc, command_id)["history"]]


def wait_state(svc, command_id: str, state: str, timeout: float = 10.0) -> dict:
    return wait_until(lambda: (lambda c: c if c["state"] == state else None)(command(svc, command_id)),
                      timeout=timeout, message=lambda: f"command {command_id}: {command(svc, command_id)}")


def ignored(svc) -> dict[str, float]:
    return {labels.split('"')[1]: value for (name, labels), value in metrics(svc).items()
            if name == "maestra_command_replies_ignored_total"}


def go_offline(svc, device: Device) -> None:
    """The device vanishes (its will) and the service has stored it offline."""
    device.client.drop()
    wait_until(lambda: get_device(svc, device.id)["status"] == "offline", timeout=10)


def online_device(svc, mqtt, broker=None, **extra) -> Device:
    record = register_http(svc, **extra)
    device = Device(mqtt, record["id"], broker=broker)
    return device


def test_a_command_goes_through_every_state_of_success_and_dashboards_see_each(fleet, mqtt):
    """Test whether a command is stored queued, sent on the broker's ack, and moved by the device's replies to succeeded, each change published for dashboards."""
    svc = fleet()
    dashboard = mqtt(subscribe=f"{PREFIX}/commands/#")
    device = online_device(svc, mqtt)
    created = send(svc, device.id, "show.restart", params={"scene": 3}, expires_in=120, timeout=10)
    assert created["state"] == "queued"
    assert created["device_id"] == device.id and created["params"] == {"scene": 3} and created["timeout"] == 10

    got = device.wait_commands(1)[0]
    assert got == {"id": created["id"], "name": "show.restart", "params": {"scene": 3},
                   "created_at": created["created_at"], "expires_at": created["expires_at"]}
    message = device.client.received(commands_filter(device.id))[0]
    assert message.qos == 1 and not message.retain
    props = message.properties
    assert props.ResponseTopic == reply_topic(device.id, created["id"])
    assert props.CorrelationData == created["id"].encode()
    assert 100 <= props.MessageExpiryInterval <= 120
    wait_state(svc, created["id"], "sent")

    device.reply(created["id"], "delivered")
    wait_state(svc, created["id"], "delivered")
    device.reply(created["id"], "in_progress")
    wait_state(svc, created["id"], "in_progress")
    device.reply(created["id"], "succeeded", result={"took_ms": 12})
    done = wait_state(svc, created["id"], "succeeded")
    assert done["result"] == {"took_ms": 12} and done["delivered_at"] is not None
    assert states(svc, created["id"]) == ["queued", "sent", "delivered", "in_progress", "succeeded"]
    history = command(svc, created["id"])["history"]
    assert history[0]["from"] is None and all(h["from"] == p["to"] for p, h in zip(history, history[1:]))

    topic = f"{PREFIX}/commands/{device.id}/{created['id']}"
    wait_until(lambda: len(dashboard.received(topic)) >= 5, timeout=10)
    seen = [json.loads(m.payload) for m in dashboard.received(topic)]
    assert [d["state"] for d in seen] == ["queued", "sent", "delivered", "in_progress", "succeeded"]
    assert not any(m.retain for m in dashboard.received(topic))
    assert seen[-1]["result"] == {"took_ms": 12}

    # A terminal state never changes: a late reply is ignored and counted.
    before = ignored(svc)["terminal"]
    device.reply(created["id"], "failed", error="late")
    wait_until(lambda: ignored(svc)["terminal"] == before + 1, timeout=10)
    assert command(svc, created["id"])["state"] == "succeeded"
    assert command(svc, created["id"])["error"] is None


def test_failed_and_rejected_replies_and_wait_answers_at_the_end(fleet, mqtt):
    """Test whether failed and rejected replies end a command with the device's error, and ?wait=N answers as soon as it is terminal."""
    svc = fleet()
    device = online_device(svc, mqtt)

    def answer(state: str, **extra):
        def run():
            got = device.wait_commands(len(device.commands()) + 1)
            device.reply(got[-1]["id"], state, **extra)
        return threading.Thread(target=run)

    worker = answer("failed", error="projector did not answer")
    worker.start()
    began = time.monotonic()
    failed = svc.post(f"/devices/{device.id}/commands?wait=10", json={"name": "projector.on"})
    worker.join(10)
    assert failed.status_code == 201, failed.text
    assert failed.json()["state"] == "failed" and failed.json()["error"] == "projector did not answer"
    assert time.monotonic() - began < 5
    # The reply may overtake the broker's ack: sent is then skipped, never stored after failed.
    assert states(svc, failed.json()["id"]) in (["queued", "sent", "failed"], ["queued", "failed"])

    worker = answer("rejected", error="unknown scene")
    worker.start()
    rejected = svc.post(f"/devices/{device.id}/commands?wait=10", json={"name": "scene", "params": {"n": 99}})
    worker.join(10)
    assert rejected.json()["state"] == "rejected"

    # Nobody answers: ?wait=1 answers after about a second with the state of the moment.
    began = time.monotonic()
    pending = svc.post(f"/devices/{device.id}/commands?wait=1", json={"name": "noop"})
    assert pending.status_code == 201
    assert pending.json()["state"] in ("queued", "sent")
    assert 0.9 <= time.monotonic() - began < 3


def test_an_offline_device_gets_its_queued_commands_in_order_when_it_comes_back(fleet, mqtt):
    """Test whether commands to an offline device stay queued (never sent, never delivered) and arrive in creation order on its birth."""
    svc = fleet()
    device = online_device(svc, mqtt)
    go_offline(svc, device)
    ids = [send(svc, device.id, f"step-{i}", params={"i": i})["id"] for i in range(5)]
    time.sleep(0.5)
    for cid in ids:
        assert command(svc, cid)["state"] == "queued"  # not "sent": nobody got it

    back = Device(mqtt, device.id)
    got = back.wait_commands(5)
    assert [c["id"] for c in got] == ids
    assert [c["params"]["i"] for c in got] == list(range(5))
    for cid in ids:
        wait_state(svc, cid, "sent")
    # A device that comes back by heartbeat (no birth) after the timeout gets them too.
    assert len(back.commands()) == 5


def test_a_device_back_by_its_first_heartbeat_gets_its_commands(fleet, mqtt):
    """Test whether the first heartbeat after being offline sends the device's undelivered commands again."""
    svc = fleet(MAESTRA_OFFLINE_AFTER="1")
    record = register_http(svc)
    device_id = record["id"]
    client = mqtt()
    client.subscribe(commands_filter(device_id))
    wait_until(lambda: get_device(svc, device_id)["status"] == "offline", timeout=10)
    cid = send(svc, device_id, "calibrate")["id"]
    time.sleep(0.3)
    assert command(svc, cid)["state"] == "queued"
    assert client.received(commands_filter(device_id)) == []
    client.publish(f"{PREFIX}/devices/{device_id}/heartbeat", b"", qos=1)
    wait_until(lambda: client.received(commands_filter(device_id)), timeout=10)
    assert json.loads(client.received(commands_filter(device_id))[0].payload)["id"] == cid
    wait_state(svc, cid, "sent")


def test_an_expired_command_is_never_delivered(fleet, mqtt):
    """Test whether a command not delivered before expires_at becomes expired and is never sent, even when the device comes back."""
    svc = fleet()
    device = online_device(svc, mqtt)
    go_offline(svc, device)
    short = send(svc, device.id, "open.door", expires_in=1)["id"]
    keep = send(svc, device.id, "lights.on")["id"]
    wait_state(svc, short, "expired", timeout=5)
    back = Device(mqtt, device.id)
    back.wait_commands(1)
    time.sleep(0.5)
    assert back.command_ids() == [keep]
    assert states(svc, short) == ["queued", "expired"]
    # Sent but never acknowledged by the device: expires too, and a late reply is ignored.
    sent = send(svc, device.id, "fade", expires_in=1)["id"]
    wait_state(svc, sent, "sent")
    wait_state(svc, sent, "expired", timeout=5)
    back.reply(sent, "delivered")
    wait_until(lambda: ignored(svc)["terminal"] >= 1, timeout=10)
    assert command(svc, sent)["state"] == "expired"


def test_a_delivered_command_without_a_result_times_out(fleet, mqtt):
    """Test whether a delivered command with no final reply within `timeout` seconds becomes timed_out, and never expires after delivery."""
    svc = fleet()
    device = online_device(svc, mqtt)
    cid = send(svc, device.id, "render", timeout=1, expires_in=1)["id"]
    device.wait_commands(1)
    device.reply(cid, "delivered")
    wait_state(svc, cid, "delivered")
    done = wait_state(svc, cid, "timed_out", timeout=5)
    assert states(svc, cid) == ["queued", "sent", "delivered", "timed_out"]
    assert done["delivered_at"] is not None


def test_idempotency_key_returns_the_same_command_and_refuses_another_body(fleet, mqtt):
    """Test whether the same Idempotency-Key and body answers 200 with the same command, and another body with it 409."""
    svc = fleet()
    device = online_device(svc, mqtt)
    key = {"Idempotency-Key": "restart-" + uuid.uuid4().hex}
    first = send(svc, device.id, "restart", headers=key, params={"a": 1, "b": 2})
    again = send(svc, device.id, "restart", expect=200, headers=key, params={"b": 2, "a": 1})
    assert again["id"] == first["id"]
    conflict = svc.post(f"/devices/{device.id}/commands", json={"name": "restart", "params": {"a": 2}}, headers=key)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"] == "conflict" and conflict.json()["field"] == "Idempotency-Key"
    assert svc.get(f"/devices/{device.id}/commands").json()[0]["id"] == first["id"]
    assert len(svc.get(f"/devices/{device.id}/commands").json()) == 1
    device.wait_commands(1)
    time.sleep(0.3)
    assert device.command_ids() == [first["id"]]  # sent once
    # The key is per device: another device may use it.
    other = online_device(svc, mqtt)
    assert send(svc, other.id, "restart", headers=key)["id"] != first["id"]


def test_cancel_a_command_that_is_not_terminal_and_never_send_it(fleet, mqtt):
    """Test whether DELETE /commands/{id} cancels a queued command (never sent afterwards) and answers 409 once it is terminal."""
    svc = fleet()
    device = online_device(svc, mqtt)
    go_offline(svc, device)
    cid = send(svc, device.id, "reboot")["id"]
    keep = send(svc, device.id, "ping")["id"]
    r = svc.delete(f"/commands/{cid}")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "canceled"
    again = svc.delete(f"/commands/{cid}")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert svc.delete(f"/commands/{uuid.uuid4()}").status_code == 404
    back = Device(mqtt, device.id)
    back.wait_commands(1)
    time.sleep(0.5)
    assert back.command_ids() == [keep]
    assert states(svc, cid) == ["queued", "canceled"]
    # A delivered command can be canceled too; the device's late result is ignored.
    back.reply(keep, "delivered")
    wait_state(svc, keep, "delivered")
    assert svc.delete(f"/commands/{keep}").json()["state"] == "canceled"
    back.reply(keep, "succeeded")
    wait_until(lambda: ignored(svc)["terminal"] >= 1, timeout=10)
    assert command(svc, keep)["state"] == "canceled"


def test_fan_out_by_ids_type_and_status(fleet, mqtt):
    """Test whether POST /commands creates one command per device named by ids, by type or by status, and refuses a wrong selection."""
    svc = fleet()
    td = [online_device(svc, mqtt, device_type="touchdesigner") for _ in range(3)]
    esp = online_device(svc, mqtt, device_type="esp32-fanout")
    r = svc.post("/commands", json={"name": "show.restart", "device_type": "touchdesigner"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert sorted(c["device_id"] for c in made) == sorted(d.id for d in td)
    assert len({c["id"] for c in made}) == 3
    for d in td:
        d.wait_commands(1)
    assert esp.commands() == []

    r = svc.post("/commands", json={"name": "ping", "device_ids": [td[0].id, esp.id]})
    assert r.status_code == 201 and sorted(c["device_id"] for c in r.json()) == sorted([td[0].id, esp.id])
    go_offline(svc, esp)
    r = svc.post("/commands", json={"name": "wake", "status": "offline"})
    assert r.status_code == 201 and [c["device_id"] for c in r.json()] == [esp.id]
    assert r.json()[0]["state"] == "queued"

    assert svc.post("/commands", json={"name": "x", "device_ids": [str(uuid.uuid4())]}).status_code == 404
    for bad in ({"name": "x"}, {"name": "x", "device_type": "a", "status": "online"}, {"name": "x", "device_ids": []},
                {"name": "x", "device_ids": ["nope"]}, {"device_type": "touchdesigner"}):
        r = svc.post("/commands", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert svc.post("/commands", json={"name": "x", "device_type": "nobody"}).json() == []


def test_a_fan_out_answers_in_the_order_named_and_every_command_has_its_history(fleet, mqtt):
    """Test whether a fan-out (one statement for all its devices) answers its commands in the order the ids were named, each with its queued history row, a device named twice getting two in order, and a keyed fan-out replaying the same commands."""
    svc = fleet()
    devices = [online_device(svc, mqtt, device_type="fan-order") for _ in range(6)]
    named = [d.id for d in reversed(devices)] + [devices[0].id]  # not the id order; one twice
    r = svc.post("/commands", json={"name": "order.check", "device_ids": named})
    assert r.status_code == 201, r.text
    made = r.json()
    assert [c["device_id"] for c in made] == named
    assert len({c["id"] for c in made}) == len(named)
    twice = [c["id"] for c in made if c["device_id"] == devices[0].id]
    got = devices[0].wait_commands(2)
    assert [c["id"] for c in got] == twice  # the device's own commands in creation order
    for c in made:
        history = command(svc, c["id"])["history"]
        assert history[0]["from"] is None and history[0]["to"] == "queued"
    # With an Idempotency-Key: the same commands again (200 path per device).
    key = {"Idempotency-Key": f"fan-{uuid.uuid4()}"}
    first = svc.post("/commands", json={"name": "keyed", "device_ids": named[:3]}, headers=key)
    again = svc.post("/commands", json={"name": "keyed", "device_ids": named[:3]}, headers=key)
    assert first.status_code == 201 and again.status_code in (200, 201)
    assert [c["id"] for c in again.json()] == [c["id"] for c in first.json()]


def test_a_deleted_devices_open_commands_leave_the_command_cache(fleet, mqtt):
    """Test whether deleting a device drops its open commands from the command owner's cache of open commands (maestra_commands_open_cached), so they do not stay until a restart."""
    svc = fleet()
    device = online_device(svc, mqtt)
    go_offline(svc, device)  # its commands stay queued: open
    cached = lambda: metrics(svc)[("maestra_commands_open_cached", "")]  # noqa: E731
    before = cached()
    ids = [send(svc, device.id, f"left-{i}")["id"] for i in range(3)]
    assert cached() == before + 3
    assert svc.delete(f"/devices/{device.id}").status_code == 204
    wait_until(lambda: cached() == before, timeout=5, message=lambda: f"open_cached {cached()}, want {before}")
    assert svc.get(f"/commands/{ids[0]}").status_code == 404


def test_replies_for_another_devices_command_or_malformed_are_ignored_and_counted(fleet, mqtt):
    """Test whether a reply on another device's topic, an unknown command, or a malformed reply is never applied, and counted."""
    svc = fleet()
    a = online_device(svc, mqtt)
    b = online_device(svc, mqtt)
    cid = send(svc, a.id, "reboot")["id"]
    a.wait_commands(1)
    wait_state(svc, cid, "sent")
    before = ignored(svc)
    b.reply(cid, "succeeded")  # on b's own topic, for a's command
    wait_until(lambda: ignored(svc)["other_device"] == before["other_device"] + 1, timeout=10)
    b.reply(str(uuid.uuid4()), "succeeded")
    wait_until(lambda: ignored(svc)["unknown_command"] == before["unknown_command"] + 1, timeout=10)
    a.client.publish(reply_topic(a.id, cid), b"not json", qos=1)
    a.client.publish(reply_topic(a.id, cid), {"state": "done"}, qos=1)
    a.client.publish(reply_topic(a.id, cid), {"state": "succeeded", "result": [1]}, qos=1)
    a.client.publish(f"{PREFIX}/devices/not-a-uuid/replies/{cid}", {"state": "succeeded"}, qos=1)
    wait_until(lambda: ignored(svc)["malformed"] == before["malformed"] + 4, timeout=10)
    # Over HTTP: another device's path answers 404, never applied.
    r = svc.post(f"/devices/{b.id}/commands/{cid}/reply", json={"state": "failed"})
    assert r.status_code == 404, r.text
    assert command(svc, cid)["state"] == "sent"
    assert states(svc, cid) == ["queued", "sent"]
    # The right device's reply still works; a step backwards is refused (409).
    a.reply(cid, "in_progress")
    wait_state(svc, cid, "in_progress")
    r = svc.post(f"/devices/{a.id}/commands/{cid}/reply", json={"state": "delivered"})
    assert r.status_code == 409, r.text
    r = svc.post(f"/devices/{a.id}/commands/{cid}/reply", json={"state": "succeeded", "result": {"ok": True}})
    assert r.status_code == 200 and r.json()["state"] == "succeeded"


def test_http_devices_long_poll_for_commands_and_reply(fleet):
    """Test whether GET .../commands/pending?wait=N waits for a command, returns it marked sent, and the HTTP reply ends it."""
    svc = fleet()
    record = register_http(svc)
    device_id = record["id"]
    began = time.monotonic()
    r = svc.get(f"/devices/{device_id}/commands/pending", params={"wait": 1})
    assert r.status_code == 200 and r.json() == []
    assert 0.9 <= time.monotonic() - began < 3

    result: dict = {}

    def poll():
        s = requests.Session()
        s.trust_env = False
        result["response"] = s.get(f"{svc.url}/devices/{device_id}/commands/pending", params={"wait": 10},
                                   timeout=15)
        result["at"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    created = send(svc, device_id, "recalibrate", params={"axis": "x"})
    sent_at = time.monotonic()
    poller.join(15)
    got = result["response"]
    assert got.status_code == 200, got.text
    assert got.json() == [{"id": created["id"], "name": "recalibrate", "params": {"axis": "x"},
                           "created_at": created["created_at"], "expires_at": created["expires_at"]}]
    assert result["at"] - sent_at < 2
    assert command(svc, created["id"])["state"] == "sent"
    # Polled again before replying: the same command again (at least once).
    assert [c["id"] for c in svc.get(f"/devices/{device_id}/commands/pending").json()] == [created["id"]]
    r = svc.post(f"/devices/{device_id}/commands/{created['id']}/reply", json={"state": "delivered"})
    assert r.status_code == 200 and r.json()["state"] == "delivered"
    assert svc.get(f"/devices/{device_id}/commands/pending").json() == []
    r = svc.post(f"/devices/{device_id}/commands/{created['id']}/reply", json={"state": "succeeded"})
    assert r.json()["state"] == "succeeded"
    assert states(svc, created["id"]) == ["queued", "sent", "delivered", "succeeded"]
    listed = svc.get(f"/devices/{device_id}/commands", params={"state": "succeeded"}).json()
    assert [c["id"] for c in listed] == [created["id"]]
    assert svc.get(f"/devices/{device_id}/commands", params={"state": "queued"}).json() == []


def test_bad_input_is_refused_with_the_json_error_shape(fleet):
    """Test whether malformed, wrong-typed, oversized and unknown-device command requests get the documented errors."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    path = f"/devices/{device_id}/commands"
    cases = [
        (b"{", 400, None),
        (b"[]", 400, None),
        (json.dumps({}).encode(), 422, "name"),
        (json.dumps({"name": "a b"}).encode(), 422, "name"),
        (json.dumps({"name": "x" * 65}).encode(), 422, "name"),
        (json.dumps({"name": "x", "params": [1]}).encode(), 422, "params"),
        (json.dumps({"name": "x", "params": {"b": "x" * 17000}}).encode(), 422, "params"),
        (json.dumps({"name": "x", "expires_in": 0}).encode(), 422, "expires_in"),
        (json.dumps({"name": "x", "expires_in": 604801}).encode(), 422, "expires_in"),
        (json.dumps({"name": "x", "timeout": "30"}).encode(), 422, "timeout"),
        (json.dumps({"name": "x", "params": {"b": "x" * 70000}}).encode(), 413, None),
    ]
    for body, status, field in cases:
        r = svc.post(path, data=body)
        assert r.status_code == status, (body[:60], r.text)
        doc = r.json()
        assert set(doc) >= {"error", "detail"}, doc
        if field:
            assert doc["field"] == field, doc
    assert svc.post(f"/devices/{uuid.uuid4()}/commands", json={"name": "x"}).status_code == 404
    assert svc.post("/devices/not-a-uuid/commands", json={"name": "x"}).status_code == 400
    assert svc.post(path, json={"name": "x"}, params={"wait": "31"}).status_code == 422
    assert svc.get(f"/devices/{uuid.uuid4()}/commands").status_code == 404
    assert svc.get(path, params={"state": "done"}).status_code == 422
    assert svc.get(path, params={"limit": "0"}).status_code == 422
    assert svc.get("/commands/not-a-uuid").status_code == 400
    assert svc.get(f"/commands/{uuid.uuid4()}").status_code == 404
    assert svc.get(f"/devices/{uuid.uuid4()}/commands/pending").status_code == 404
    assert svc.get(f"/devices/{device_id}/commands/pending", params={"wait": "x"}).status_code == 422
    cid = send(svc, device_id, "x")["id"]
    for body, status in ((b"nope", 400), (b'{"state":"queued"}', 422), (b'{"state":"failed","error":5}', 422)):
        r = svc.post(f"/devices/{device_id}/commands/{cid}/reply", data=body)
        assert r.status_code == status, r.text
    assert svc.post(f"/devices/{device_id}/commands/{uuid.uuid4()}/reply", json={"state": "delivered"}).status_code == 404
    assert psql_value(svc.database_url, "SELECT count(*) FROM commands") == "1"


def test_kill_9_between_stored_and_sent_loses_nothing(fleet, mqtt, start_broker):
    """Test whether a command stored while the service's broker link is cut survives a kill -9 of the service and is sent by the outbox when it is back, to a device that stayed connected throughout."""
    broker = start_broker()
    proxy = FaultProxy(broker.port).start()  # the service's only way to the broker
    try:
        svc = fleet(broker=broker, MAESTRA_MQTT_URL=proxy.url)
        heard = mqtt_messages_total(svc)
        device = online_device(svc, mqtt, broker=broker)  # connected to the broker itself
        wait_until(lambda: mqtt_messages_total(svc) > heard, timeout=10)  # its birth reached the service
        proxy.cut_after_connect(1000, 0.0)
        proxy.cut_open_connections()
        wait_until(lambda: svc.get("/health").json()["mqtt"] == "disconnected", timeout=10)
        cid = send(svc, device.id, "stored-not-sent")["id"]
        assert psql_value(svc.database_url, f"SELECT state FROM commands WHERE id = '{cid}'") == "queued"
        svc.kill()
        assert device.commands() == []
        proxy.cut_after_connect(0, 0.0)
        svc.start()
        # The device's birth is long past (retained births are not news): only the outbox sends it.
        got = device.wait_commands(1, timeout=15)
        assert [c["id"] for c in got] == [cid]
        wait_state(svc, cid, "sent")
        device.reply(cid, "succeeded")
        wait_state(svc, cid, "succeeded")
        assert states(svc, cid) == ["queued", "sent", "succeeded"]
        time.sleep(0.3)
        assert device.command_ids() == [cid]  # once
    finally:
        proxy.stop()


def test_a_broker_restart_mid_delivery_loses_nothing(fleet, mqtt, start_broker):
    """Test whether commands sent but not acknowledged by the device, and commands created while the broker is down, all reach the device in order after a broker restart."""
    broker = start_broker()
    svc = fleet(broker=broker)
    device = online_device(svc, mqtt, broker=broker)
    first = send(svc, device.id, "one")["id"]
    device.wait_commands(1)
    wait_state(svc, first, "sent")
    broker.stop()
    second = send(svc, device.id, "two")["id"]
    third = send(svc, device.id, "three")["id"]
    broker.start()
    back = Device(mqtt, device.id, broker=broker)
    got = back.wait_commands(3, timeout=15)
    ids = [c["id"] for c in got]
    # At least once and in order: the first occurrence of each id follows creation order.
    firsts = sorted({i: ids.index(i) for i in ids}.items(), key=lambda kv: kv[1])
    assert [i for i, _ in firsts] == [first, second, third]
    for cid in (first, second, third):
        back.reply(cid, "succeeded")
        wait_state(svc, cid, "succeeded")


def test_mqtt_v311_devices_get_commands_and_reply_by_topic_ids(fleet, mqtt):
    """Test whether a device on MQTT v3.1.1 (no properties) receives commands and replies with the ids in the topic."""
    svc = fleet()
    record = register_http(svc)
    device = Device(mqtt, record["id"], protocol=311)
    cid = send(svc, device.id, "blink")["id"]
    assert device.wait_commands(1)[0]["id"] == cid
    device.reply(cid, "succeeded")
    wait_state(svc, cid, "succeeded")


@pytest.mark.parametrize("fail", [False, True])
def test_the_python_example_device_answers_commands(fleet, mosquitto, fail):
    """Test whether examples/python/mqtt_device.py receives a command, replies delivered then succeeded (failed with --fail), and handles a command sent again only once."""
    import os
    import subprocess

    from harness import REPO
    svc = fleet()
    hardware_id = f"example-cmd-{uuid.uuid4().hex[:8]}"
    argv = ["/usr/bin/python3", str(REPO / "examples" / "python" / "mqtt_device.py"), "--host", "127.0.0.1",
            "--port", str(mosquitto.port), "--hardware-id", hardware_id, "--interval", "5"] + (["--fail"] if fail else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("birth published" in line for line in lines), timeout=15, message=lambda: "".join(lines))
        device_id = svc.get("/devices", params={"hardware_id": hardware_id}).json()[0]["id"]
        r = svc.post(f"/devices/{device_id}/commands", params={"wait": 10},
                     json={"name": "projector.on", "params": {"input": "hdmi1"}})
        assert r.status_code == 201, r.text
        done = r.json()
        if fail:
            assert done["state"] == "failed" and "simulated failure" in done["error"], done
        else:
            assert done["state"] == "succeeded", done
            assert done["result"] == {"name": "projector.on", "params": {"input": "hdmi1"}}
        assert states(svc, done["id"])[-2:] == ["delivered", done["state"]]
        wait_until(lambda: any(done["id"] in line for line in lines), timeout=5)
        handled = [line for line in lines if done["id"] in line]
        assert len(handled) == 1, lines
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_reply_sent_while_the_database_is_down_is_applied_when_it_returns(start_service, mqtt):
    """Test whether a device's MQTT reply that arrives during a database outage is kept and applied once the database is back."""
    from harness import PostgresCluster
    cluster = PostgresCluster().start()
    try:
        svc = start_service(database_url=cluster.new_database())
        wait_mqtt_ready(svc, mqtt)
        device = online_device(svc, mqtt)
        cid = send(svc, device.id, "during.outage")["id"]
        device.wait_commands(1)
        wait_state(svc, cid, "sent")
        cluster.stop()
        assert svc.get("/health").status_code == 503
        device.reply(cid, "succeeded", result={"ok": True})
        time.sleep(1.0)
        cluster.start()
        wait_until(lambda: svc.get("/health").status_code == 200, timeout=20)
        done = wait_state(svc, cid, "succeeded", timeout=15)
        assert done["result"] == {"ok": True}
    finally:
        cluster.cleanup()
