"""The service's MQTT session across restarts, its own and the broker's.

- QoS 1 heartbeats and wills published while fleet-manager is stopped wait in its
  persistent session on the broker and are applied after it restarts.
- The broker restarted (or crashed) under a running service: the service
  reconnects by itself, re-subscribes, and publishes the status changes it could
  not publish meanwhile, without a restart of its own.
- A device deleted while the broker is away leaves no retained topics behind
  once it returns (Paho buffers publishes while disconnected), even if the
  service crashes before that (the pending clear is stored with the delete).
"""
from __future__ import annotations

import signal

import pytest

from test_mqtt_common import (
    db_device,
    db_history,
    fleet,  # noqa: F401 - the fixture
    fleet_status_topic,
    get_device,
    health,
    heartbeat_topic,
    metrics,
    patch_device,
    payload_json,
    presence_topic,
    register_http,
    registered_and_watched,
    retained_now,
    status_docs,
    status_topic,
    stop_service,
    ts,
    utc_now_ms,
    wait_metric,
    wait_mqtt_ready,
    wait_status,
)
from harness import psql, wait_until


def test_qos1_messages_sent_while_service_stopped_are_applied_after_restart(fleet, mqtt):
    """Test whether QoS 1 heartbeats and wills sent while the service is stopped are applied after it restarts."""
    svc = fleet()
    beating = register_http(svc)["id"]
    dying = register_http(svc)["id"]
    watcher = mqtt(subscribe="maestra/devices/+/status")
    wait_status(watcher, beating, "online", "registered")
    wait_status(watcher, dying, "online", "registered")
    seen_before = ts(get_device(svc, beating)["last_seen"])
    dying_client = mqtt(will=(presence_topic(dying), b"offline", 1, True))
    dying_client.publish(presence_topic(dying), b"online", qos=1, retain=True)

    assert stop_service(svc) == 0
    sent_at = utc_now_ms()
    device = mqtt()
    device.publish(heartbeat_topic(beating), b"", qos=1)
    device.publish(heartbeat_topic(beating), {"status": "error"}, qos=1)
    dying_client.drop()  # its will goes to the broker, and to the service's queue
    wait_until(lambda: any(m.payload == b"offline"
                           for m in retained_now(mqtt, presence_topic(dying), strict=False)),
               timeout=10, message="the broker never published the will")

    restarted_at = utc_now_ms()
    svc.start()
    wait_mqtt_ready(svc, mqtt)
    _, doc = wait_status(watcher, beating, "error", "reported_error")
    wait_status(watcher, dying, "offline", "will")
    # Both queued heartbeats were delivered to the new process (its counters start at 0).
    wait_metric(svc, lambda: metrics(svc)[("maestra_heartbeats_total", 'transport="mqtt"')],
                lambda v: v >= 2, what="mqtt heartbeats")
    assert metrics(svc)[("maestra_heartbeats_total", 'transport="mqtt"')] == 2
    got = get_device(svc, beating)
    assert got["status"] == "error"
    # last_seen is the time the heartbeats were processed: after the restart.
    assert ts(got["last_seen"]) >= restarted_at > sent_at > seen_before
    assert ts(doc["changed_at"]) >= restarted_at
    assert db_history(svc, beating) == [(None, "online", "registered"), ("online", "error", "reported_error")]
    assert db_device(svc, dying)["status_reason"] == "will"
    assert get_device(svc, dying)["status"] == "offline"
    mqtt().publish(presence_topic(dying), b"", qos=1, retain=True)


@pytest.mark.parametrize("broker_signal", [signal.SIGTERM, signal.SIGKILL], ids=["broker-stopped", "broker-crashed"])
def test_broker_restart_under_running_service(start_broker, fleet, mqtt, broker_signal):
    """Test whether the service reconnects, re-subscribes and publishes missed statuses after the broker restarts."""
    broker = start_broker()
    svc = fleet(broker=broker)
    pid = svc.pid
    device_id, watcher = registered_and_watched(svc, mqtt, broker=broker)
    assert metrics(svc)[("maestra_mqtt_reconnects_total", "")] == 0

    broker.stop(broker_signal)
    wait_until(lambda: health(svc)["mqtt"] == "disconnected", timeout=10)
    # A change while the broker is away: stored, but not publishable yet.
    assert patch_device(svc, device_id, {"status": "maintenance"})["status"] == "maintenance"
    row = psql(svc.database_url, f"SELECT status, status_seq, published_seq FROM devices WHERE id = '{device_id}'")[0]
    assert row[0] == "maintenance" and int(row[1]) > int(row[2]), row

    broker.start()
    wait_until(lambda: health(svc)["mqtt"] == "connected", timeout=40,
               message=lambda: "service did not reconnect\n" + svc.log_tail(20))
    assert svc.pid == pid and svc.is_running()  # no restart of its own
    assert metrics(svc)[("maestra_mqtt_reconnects_total", "")] == 1

    # The missed status is published (retained) after the reconnect ...
    def retained_status():
        found = retained_now(mqtt, status_topic(device_id), broker=broker, strict=False)
        return found and payload_json(found[-1])
    doc = wait_until(lambda: (lambda d: d and d["status"] == "maintenance" and d)(retained_status()), timeout=10,
                     message=lambda: "missed status never published\n" + svc.log_tail(20))
    assert doc["reason"] == "admin"
    wait_until(lambda: psql(svc.database_url, "SELECT status_seq = published_seq FROM devices"
                                              f" WHERE id = '{device_id}'")[0][0] == "t", timeout=10)
    fleet_status = retained_now(mqtt, fleet_status_topic(), broker=broker)
    assert [payload_json(m)["status"] for m in fleet_status] == ["online"]

    # ... and the subscriptions are back (after a crash the broker forgot them):
    # the republish above was sent after the re-SUBSCRIBEs on the same connection.
    seen = ts(get_device(svc, device_id)["last_seen"])
    mqtt(broker=broker).publish(heartbeat_topic(device_id), b"", qos=1)
    wait_until(lambda: ts(get_device(svc, device_id)["last_seen"]) > seen, timeout=10,
               message=lambda: "heartbeat after the reconnect was not applied\n" + svc.log_tail(20))
    assert get_device(svc, device_id)["status"] == "maintenance"
    assert "mqtt_connection_lost" in svc.log_text()
    assert svc.log_text().count(" info starting ") == 1


def test_status_unpublished_at_a_crash_is_published_after_the_next_start(start_broker, fleet, mqtt):
    """Test whether a status stored while the broker was away and then lost in a service crash is published on the next start."""
    broker = start_broker()
    svc = fleet(broker=broker)
    device_id, watcher = registered_and_watched(svc, mqtt, broker=broker)

    broker.stop()
    wait_until(lambda: health(svc)["mqtt"] == "disconnected", timeout=10)
    assert patch_device(svc, device_id, {"status": "maintenance"})["status"] == "maintenance"
    svc.kill()  # the status is only in Postgres now (its outbox)
    broker.start()
    assert [payload_json(m)["status"] for m in retained_now(mqtt, status_topic(device_id), broker=broker)] \
        == ["online"]

    svc.start()
    wait_mqtt_ready(svc, mqtt, broker=broker)
    doc = wait_until(lambda: (lambda found: found and payload_json(found[-1])["status"] == "maintenance"
                              and payload_json(found[-1]))(retained_now(mqtt, status_topic(device_id), broker=broker,
                                                                       strict=False)),
                     timeout=10, message=lambda: "outbox never republished\n" + svc.log_tail(20))
    assert doc["reason"] == "admin"
    assert "outbox_republish statuses=1" in svc.log_text()


def test_devices_get_a_full_window_after_a_service_restart(fleet, mqtt):
    """Test whether after a service restart a silent device gets one full offline_after window, then goes offline with reason restart."""
    svc = fleet()  # offline_after 300 s while the devices register
    silent_id = register_http(svc)["id"]  # follows the service default
    keeper_id = register_http(svc, offline_after=300)["id"]  # its own window
    watcher = mqtt(subscribe="maestra/devices/+/status")
    wait_status(watcher, silent_id, "online", "registered")
    wait_status(watcher, keeper_id, "online", "registered")

    stop_service(svc)
    svc.env["MAESTRA_OFFLINE_AFTER"] = "1"  # the restarted service's default window: 1 s
    restarted_at = utc_now_ms()
    start = len(watcher.messages)
    svc.start()
    wait_mqtt_ready(svc, mqtt)
    _, doc = wait_status(watcher, silent_id, "offline", start=start, timeout=10)
    assert doc["reason"] == "restart"
    waited = (ts(doc["changed_at"]) - restarted_at).total_seconds()
    assert 1.0 <= waited <= 4.0, waited  # a full window from the restart, not from its last sign of life
    assert db_device(svc, silent_id)["status_reason"] == "restart"
    assert get_device(svc, keeper_id)["status"] == "online"
    assert [d["status"] for d in status_docs(watcher, keeper_id)] == ["online"]


def deleted_while_the_broker_is_away(start_broker, fleet, mqtt):
    """Two registered devices, the first with a retained status and presence; the
    broker stopped; the first deleted. Returns (broker, service, deleted id, kept id)."""
    broker = start_broker()
    svc = fleet(broker=broker)
    device_id, _ = registered_and_watched(svc, mqtt, broker=broker)
    keeper = register_http(svc)["id"]
    mqtt(broker=broker).publish(presence_topic(device_id), b"online", qos=1, retain=True)
    wait_until(lambda: retained_now(mqtt, presence_topic(device_id), broker=broker, strict=False), timeout=10)

    broker.stop()
    wait_until(lambda: health(svc)["mqtt"] == "disconnected", timeout=10)
    assert svc.delete(f"/devices/{device_id}").status_code == 204
    return broker, svc, device_id, keeper


def test_delete_while_the_broker_is_away_clears_the_retained_topics_after_it_returns(start_broker, fleet, mqtt):
    """Test whether a device deleted while the broker is down leaves no retained status or presence behind once
    the broker is back (no ghost device on dashboards)."""
    broker, svc, device_id, keeper = deleted_while_the_broker_is_away(start_broker, fleet, mqtt)
    broker.start()  # with its persisted retained messages: the ghost is back on the broker
    wait_until(lambda: health(svc)["mqtt"] == "connected", timeout=40,
               message=lambda: "service did not reconnect\n" + svc.log_tail(20))

    wait_until(lambda: not retained_now(mqtt, status_topic(device_id), broker=broker, strict=False), timeout=10,
               message=lambda: "the deleted device's retained status is still on the broker\n" + svc.log_tail(20))
    assert not retained_now(mqtt, presence_topic(device_id), broker=broker, strict=False)
    # The other device is untouched. Not strict: after a lost connection the service publishes every status
    # again (a broker back from a crash may hold older ones), so the keeper's may be in flight meanwhile.
    assert [payload_json(m)["status"] for m in retained_now(mqtt, status_topic(keeper), broker=broker,
                                                             strict=False)] == ["online"]


def test_delete_while_the_broker_is_away_then_a_crash_still_clears_the_retained_topics(start_broker, fleet, mqtt):
    """Test whether a device deleted while the broker is down, with the service then killed before the broker
    returns, has its retained topics cleared after the next start (the pending clear is stored with the delete)."""
    broker, svc, device_id, keeper = deleted_while_the_broker_is_away(start_broker, fleet, mqtt)
    assert psql(svc.database_url, "SELECT device_id::text FROM retained_clears")[0][0] == device_id
    svc.kill()  # the clear Paho buffered is gone with the process
    broker.start()
    assert retained_now(mqtt, status_topic(device_id), broker=broker)  # the ghost is on the broker

    svc.start()
    wait_mqtt_ready(svc, mqtt, broker=broker)
    wait_until(lambda: not retained_now(mqtt, status_topic(device_id), broker=broker, strict=False), timeout=10,
               message=lambda: "the deleted device's retained status is still on the broker\n" + svc.log_tail(20))
    assert not retained_now(mqtt, presence_topic(device_id), broker=broker, strict=False)
    assert "retained_clears_republish devices=1" in svc.log_text()
    # Acknowledged, so the pending clear is gone; the other device is untouched.
    wait_until(lambda: psql(svc.database_url, "SELECT count(*) FROM retained_clears")[0][0] == "0", timeout=10)
    assert [payload_json(m)["status"] for m in retained_now(mqtt, status_topic(keeper), broker=broker)] == ["online"]
