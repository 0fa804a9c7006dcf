"""Commands in secure mode, against a real Mosquitto with the dynamic-security
plugin: a device's broker account may subscribe only to its own commands and
publish only its own replies, so no device can read or answer another's
commands; over HTTP the long poll and the reply need the device's own
credentials."""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from harness import wait_until
from test_security import (
    ADMIN,
    secure_stack,
    connect,
    device,
)


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory):
    yield from secure_stack(postgres, tmp_path_factory, "commands-secure")


def send(service, device_id: str, name: str) -> str:
    r = service.post(f"/devices/{device_id}/commands", json={"name": name}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def state(service, command_id: str) -> str:
    return service.get(f"/commands/{command_id}", headers=ADMIN).json()["state"]


def basic(record) -> dict:
    token = base64.b64encode(f"{record['id']}:{record['mqtt']['password']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_a_device_reads_and_answers_only_its_own_commands(stack):
    """Test whether a device account can subscribe to its own commands and reply to them, and the broker refuses its subscription to another device's commands and drops its replies under another device's id."""
    broker, service = stack
    a, b = device(service, f"cmd-sec-a-{uuid.uuid4().hex[:6]}"), device(service, f"cmd-sec-b-{uuid.uuid4().hex[:6]}")
    client, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"])
    assert rc == 0
    client.subscribe(f"maestra/devices/{a['id']}/commands/#")
    with pytest.raises(RuntimeError):
        client.subscribe(f"maestra/devices/{b['id']}/commands/#")
    with pytest.raises(RuntimeError):
        client.subscribe("maestra/devices/+/commands/#")

    for_b = send(service, b["id"], "b.only")
    for_a = send(service, a["id"], "a.only")
    got = client.wait_for(f"maestra/devices/{a['id']}/commands/+", timeout=10)
    assert json.loads(got.payload)["id"] == for_a
    wait_until(lambda: state(service, for_b) == "sent", timeout=10)

    # A answers B's command on B's topic (the broker drops it), then its own.
    client.client.publish(f"maestra/devices/{b['id']}/replies/{for_b}", b'{"state":"succeeded"}', qos=1).wait_for_publish(5)
    client.client.publish(f"maestra/devices/{a['id']}/replies/{for_a}", b'{"state":"succeeded"}', qos=1).wait_for_publish(5)
    wait_until(lambda: state(service, for_a) == "succeeded", timeout=10)
    time.sleep(0.3)
    assert state(service, for_b) == "sent"
    assert not [m for m in client.received() if f"/{b['id']}/" in m.topic]
    client.close()


def test_http_devices_poll_and_reply_only_with_their_own_credentials(stack):
    """Test whether the long poll and the HTTP reply refuse a missing credential (401) and another device's (403), and take the device's own."""
    _, service = stack
    a, b = device(service, f"cmd-http-a-{uuid.uuid4().hex[:6]}"), device(service, f"cmd-http-b-{uuid.uuid4().hex[:6]}")
    cid = send(service, a["id"], "poll.me")
    pending = f"/devices/{a['id']}/commands/pending"
    assert service.get(pending).status_code == 401
    assert service.get(pending, headers=basic(b)).status_code == 403
    r = service.get(pending, headers=basic(a))
    assert r.status_code == 200 and [c["id"] for c in r.json()] == [cid]
    reply = f"/devices/{a['id']}/commands/{cid}/reply"
    assert service.post(reply, json={"state": "succeeded"}).status_code == 401
    assert service.post(reply, json={"state": "succeeded"}, headers=basic(b)).status_code == 403
    assert service.post(reply, json={"state": "succeeded"},
                        headers={"Authorization": f"Bearer {b['mqtt']['password']}"}).status_code == 403
    assert state(service, cid) == "sent"
    r = service.post(reply, json={"state": "succeeded"}, headers=basic(a))
    assert r.status_code == 200 and r.json()["state"] == "succeeded"


def test_device_roles_made_before_commands_get_their_replies_at_start(stack):
    """Test whether a device role without replies/# (made by an earlier version) cannot reply, and gets the ACL when the service starts."""
    import subprocess

    from test_security import SERVICE_PASSWORD as password, SERVICE_USER as user
    broker, service = stack
    a = device(service, f"cmd-old-role-{uuid.uuid4().hex[:6]}")
    subprocess.run(["mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(broker.port), "-u", user, "-P", password,
                    "dynsec", "removeRoleACL", f"maestra-device-{a['id']}", "publishClientSend",
                    f"maestra/devices/{a['id']}/replies/#"], check=True, capture_output=True, timeout=30)
    client, rc = connect(broker, a["mqtt"]["username"], a["mqtt"]["password"])
    assert rc == 0
    client.subscribe(f"maestra/devices/{a['id']}/commands/#")
    cid = send(service, a["id"], "old.role")
    client.wait_for(f"maestra/devices/{a['id']}/commands/+", timeout=10)
    wait_until(lambda: state(service, cid) == "sent", timeout=10)
    client.client.publish(f"maestra/devices/{a['id']}/replies/{cid}", b'{"state":"succeeded"}', qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert state(service, cid) == "sent"  # the broker dropped it: no ACL

    upgraded = service.log_text().count("device_roles_upgraded")
    service.http.close()
    service.restart()
    wait_until(lambda: service.log_text().count("device_roles_upgraded") > upgraded, timeout=20,
               message=service.log_tail)
    client.client.publish(f"maestra/devices/{a['id']}/replies/{cid}", b'{"state":"succeeded"}', qos=1).wait_for_publish(5)
    wait_until(lambda: state(service, cid) == "succeeded", timeout=10)
    client.close()
