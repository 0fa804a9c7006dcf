"""Telemetry (metrics and events) against the real Postgres and Mosquitto: the
bodies existing Maestra clients send are accepted unchanged and are stored when
answered (group commit); every refusal stores nothing; bucketed queries return
exactly the aggregates of points at known times; the latest values survive a
restart; a partition past retention is dropped by the start-up maintenance
pass; MQTT metrics and events are stored; MQTT telemetry of an unknown device is
dropped and counted.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from harness import PG_BIN, REPO, psql, psql_value, wait_until
from test_mqtt_common import (
    fleet,  # noqa: F401 - the fixture
    metrics,
    register_http,
    restart_ready,
)

PREFIX = "maestra"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def metrics_topic(device_id: str) -> str:
    return f"{PREFIX}/devices/{device_id}/telemetry/metrics"


def events_topic(device_id: str) -> str:
    return f"{PREFIX}/devices/{device_id}/telemetry/events"


def stored_metrics(svc, device_id: str) -> list[tuple[str, float]]:
    rows = psql(svc.database_url,
                "SELECT n.name, m.value FROM metrics m JOIN metric_names n ON n.id = m.name_id"
                f" WHERE m.device_id = '{device_id}' ORDER BY m.time, n.name")
    return [(r[0], float(r[1])) for r in rows]


def stored_events(svc, device_id: str) -> list[tuple[str, str]]:
    rows = psql(svc.database_url,
                f"SELECT event_type, severity FROM events WHERE device_id = '{device_id}' ORDER BY time, event_type")
    return [(r[0], r[1]) for r in rows]


def partitions(svc, table: str) -> set[str]:
    rows = psql(svc.database_url,
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                f" WHERE i.inhparent = '{table}'::regclass")
    return {r[0] for r in rows}


def hold_share_lock(svc, table: str, seconds: float) -> subprocess.Popen:
    """Another session holds a SHARE lock on the table for `seconds` (the writer's
    INSERT waits for it); returns once the lock is granted."""
    locker = subprocess.Popen([str(PG_BIN / "psql"), "-X", "-q", "-d", svc.database_url, "-c",
                               f"BEGIN; LOCK TABLE {table} IN SHARE MODE; SELECT pg_sleep({seconds}); COMMIT;"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: psql_value(svc.database_url, "SELECT count(*) FROM pg_locks l JOIN pg_class c"
                                  " ON c.oid = l.relation WHERE c.relname = '%s' AND l.mode = 'ShareLock'"
                                  " AND l.granted" % table) == "1", timeout=10)
    return locker


def telemetry_counter(svc, name: str, labels: str = "") -> float:
    return metrics(svc).get((name, labels), 0.0)


def test_upstream_bodies_are_accepted_unchanged_and_stored_when_answered(fleet):
    """Test whether POST /metrics, /metrics/batch, /events and /events/batch take the upstream bodies and have stored them when they answer."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    r = svc.post("/metrics", json={"device_id": device_id, "metric_name": "temperature", "metric_value": 23.5,
                                   "unit": "celsius", "tags": {"room": "lab"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "metric": "temperature"}
    # Answered after the commit: the row is there at once.
    assert stored_metrics(svc, device_id) == [("temperature", 23.5)]

    now = datetime.now(timezone.utc)
    batch = [{"device_id": device_id, "metric_name": "humidity", "metric_value": 40 + i,
              "time": iso(now - timedelta(seconds=10 - i))} for i in range(3)]
    r = svc.post("/metrics/batch", json=batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "count": 3}
    assert len(stored_metrics(svc, device_id)) == 4

    r = svc.post("/events", json={"device_id": device_id, "event_type": "door_opened", "severity": "warning",
                                  "message": "front door", "data": {"door": 1}})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "event_type": "door_opened"}
    r = svc.post("/events/batch", json=[{"device_id": device_id, "event_type": "boot"},
                                        {"device_id": device_id, "event_type": "sensor_fault", "severity": "error"}])
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "count": 2}
    assert sorted(stored_events(svc, device_id)) == [("boot", "info"), ("door_opened", "warning"),
                                                     ("sensor_fault", "error")]

    # Read back through the query routes.
    events = svc.get(f"/devices/{device_id}/events").json()["events"]
    assert [e["event_type"] for e in events][-1] == "door_opened"  # newest first: door_opened was first
    door = [e for e in events if e["event_type"] == "door_opened"][0]
    assert door["message"] == "front door" and door["data"] == {"door": 1} and door["severity"] == "warning"
    assert [e["event_type"] for e in svc.get(f"/devices/{device_id}/events?severity=error").json()["events"]] == \
        ["sensor_fault"]
    points = svc.get(f"/devices/{device_id}/metrics?name=temperature").json()["points"]
    assert [(p["name"], p["value"], p["unit"], p["tags"]) for p in points] == \
        [("temperature", 23.5, "celsius", {"room": "lab"})]
    latest = svc.get(f"/devices/{device_id}/metrics/latest").json()
    assert latest["metrics"]["humidity"]["value"] == 42
    assert latest["metrics"]["temperature"]["unit"] == "celsius"
    counters = metrics(svc)
    assert counters[("maestra_telemetry_points_total", 'transport="http"')] == 4
    assert counters[("maestra_telemetry_events_total", 'transport="http"')] == 3
    assert counters[("maestra_telemetry_batch_rows_count", "")] >= 1
    assert counters[("maestra_telemetry_flush_seconds_count", "")] >= 1


def test_an_http_point_is_answered_only_once_committed(fleet):
    """Test whether POST /metrics and /events wait for the transaction holding their rows (held up by a lock here)."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    hold = 1.5
    for path, body, count in (
            ("/metrics", {"device_id": device_id, "metric_name": "t", "metric_value": 1},
             lambda: len(stored_metrics(svc, device_id))),
            ("/events", {"device_id": device_id, "event_type": "boot"}, lambda: len(stored_events(svc, device_id)))):
        locker = hold_share_lock(svc, path.strip("/"), hold)
        try:
            started = time.monotonic()
            r = svc.post(path, json=body)
            waited = time.monotonic() - started
            assert r.status_code == 200, r.text
            assert count() == 1
            assert waited > hold / 2, f"{path} answered in {waited:.3f} s, before its transaction could commit"
        finally:
            locker.wait(timeout=30)


def test_every_refusal_is_clear_and_stores_nothing(fleet):
    """Test whether bad values, oversized names, far times, bad severities, unknown devices and oversized batches are refused with the field named."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    now = datetime.now(timezone.utc)

    def metric(**changes):
        body = {"device_id": device_id, "metric_name": "temperature", "metric_value": 1}
        body.update(changes)
        return body

    cases = [
        ("/metrics", metric(metric_value="23.5"), 422, "metric_value"),
        ("/metrics", metric(metric_value=True), 422, "metric_value"),
        ("/metrics", metric(metric_value=None), 422, "metric_value"),
        ("/metrics", metric(metric_name="n" * 129), 422, "metric_name"),
        ("/metrics", metric(unit="u" * 33), 422, "unit"),
        ("/metrics", metric(time=iso(now + timedelta(hours=1))), 422, "time"),
        ("/metrics", metric(time=iso(now - timedelta(days=91))), 422, "time"),
        ("/metrics", metric(device_id=str(uuid.uuid4())), 404, "device_id"),
        ("/events", {"device_id": device_id, "event_type": "boot", "severity": "fatal"}, 422, "severity"),
        ("/events", {"device_id": device_id}, 422, "event_type"),
        ("/events", {"device_id": device_id, "event_type": "boot", "time": iso(now - timedelta(days=31))}, 422, "time"),
        ("/events", {"device_id": str(uuid.uuid4()), "event_type": "boot"}, 404, "device_id"),
        ("/metrics/batch", [metric(metric_value=i) for i in range(17)] + [metric(metric_value="x")], 422,
         "[17].metric_value"),
        ("/metrics/batch", [metric(), metric(device_id=str(uuid.uuid4()))], 404, "[1].device_id"),
        ("/metrics/batch", [metric() for _ in range(1001)], 422, None),
        ("/events/batch", [{"device_id": device_id, "event_type": "a"}, {"device_id": device_id, "event_type": "b",
                                                                         "severity": "loud"}], 422, "[1].severity"),
    ]
    for path, body, status, field in cases:
        r = svc.post(path, json=body)
        assert r.status_code == status, (path, str(body)[:200], r.status_code, r.text)
        answer = r.json()
        assert answer["error"] in ("invalid_field", "not_found"), answer
        if field is not None:
            assert answer.get("field") == field, (path, answer)
    # Not JSON numbers at all: malformed, 400.
    for raw in ('{"device_id":"%s","metric_name":"t","metric_value":NaN}' % device_id,
                '{"device_id":"%s","metric_name":"t","metric_value":Infinity}' % device_id):
        r = svc.post("/metrics", data=raw)
        assert r.status_code == 400, r.text
    # Body limits: a batch of ~100 KB is taken, the same bytes on POST /metrics are over its 64 KiB;
    # a batch body over 1 MiB is 413.
    padded = [metric(tags={"pad": "x" * 90}) for _ in range(900)]
    assert len(json.dumps(padded)) > 100_000
    r = svc.post("/metrics", data=json.dumps(padded))
    assert r.status_code == 413, r.text
    r = svc.post("/metrics/batch", data=json.dumps([metric(tags={"pad": "x" * 1000}) for _ in range(1000)]))
    assert r.status_code == 413, r.text
    assert stored_metrics(svc, device_id) == [] and stored_events(svc, device_id) == []
    r = svc.post("/metrics/batch", json=padded)
    assert r.status_code == 200, r.text
    assert len(stored_metrics(svc, device_id)) == 900
    assert telemetry_counter(svc, "maestra_telemetry_rejected_total", 'transport="http"') >= len(cases)


def test_bucketed_queries_return_exact_aggregates(fleet):
    """Test whether GET /devices/{id}/metrics with bucket and agg returns exactly the aggregates of points at known times."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    now = datetime.now(timezone.utc)
    base = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5 + 30)  # a 5-minute boundary
    points = [(0, 1.0), (60, 2.0), (120, 3.0), (300, 10.0), (310, 20.0), (600, -5.0)]
    batch = [{"device_id": device_id, "metric_name": "temperature", "metric_value": v,
              "time": iso(base + timedelta(seconds=s))} for s, v in points]
    batch.append({"device_id": device_id, "metric_name": "other", "metric_value": 1000,
                  "time": iso(base + timedelta(seconds=5))})
    assert svc.post("/metrics/batch", json=batch).status_code == 200
    span = f"from={iso(base)}&to={iso(base + timedelta(minutes=15))}"

    def buckets(agg: str, bucket: str = "5m", name: str = "temperature"):
        r = svc.get(f"/devices/{device_id}/metrics?name={name}&{span}&bucket={bucket}&agg={agg}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["bucket"] == bucket and body["agg"] == agg
        return [(b["time"], b["value"], b["count"]) for b in body["buckets"]]

    t = [iso(base + timedelta(minutes=m)) for m in (0, 5, 10)]
    assert buckets("avg") == [(t[0], 2.0, 3), (t[1], 15.0, 2), (t[2], -5.0, 1)]
    assert buckets("min") == [(t[0], 1.0, 3), (t[1], 10.0, 2), (t[2], -5.0, 1)]
    assert buckets("max") == [(t[0], 3.0, 3), (t[1], 20.0, 2), (t[2], -5.0, 1)]
    assert buckets("sum") == [(t[0], 6.0, 3), (t[1], 30.0, 2), (t[2], -5.0, 1)]
    assert buckets("count") == [(t[0], 3, 3), (t[1], 2, 2), (t[2], 1, 1)]
    assert [b[1] for b in buckets("sum", bucket="1m")] == [1.0, 2.0, 3.0, 30.0, -5.0]
    # Without a name, every metric, by bucket then name.
    r = svc.get(f"/devices/{device_id}/metrics?{span}&bucket=5m&agg=count").json()
    assert [(b["time"], b["name"], b["value"]) for b in r["buckets"]] == \
        [(t[0], "other", 1), (t[0], "temperature", 3), (t[1], "temperature", 2), (t[2], "temperature", 1)]
    # Raw points, oldest first; limit keeps the newest.
    raw = svc.get(f"/devices/{device_id}/metrics?name=temperature&{span}").json()["points"]
    assert [p["value"] for p in raw] == [v for _, v in points]
    raw = svc.get(f"/devices/{device_id}/metrics?name=temperature&{span}&limit=2").json()["points"]
    assert [p["value"] for p in raw] == [20.0, -5.0]
    # The cap on buckets per query, and bad parameters.
    for query, field in (("bucket=1s", "bucket"), ("bucket=1h&agg=median", "agg"), ("from=yesterday", "from"),
                         ("limit=0", "limit")):
        r = svc.get(f"/devices/{device_id}/metrics?{query}")
        assert r.status_code == 422 and r.json()["field"] == field, (query, r.text)
    assert svc.get(f"/devices/{uuid.uuid4()}/metrics").status_code == 404
    assert svc.get("/devices/not-a-uuid/metrics/latest").status_code == 400


def test_latest_values_survive_a_restart(fleet, mqtt):
    """Test whether GET /devices/{id}/metrics/latest serves the same values after the service restarts."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    now = datetime.now(timezone.utc)
    batch = [{"device_id": device_id, "metric_name": "rssi", "metric_value": -70 + i, "unit": "dBm",
              "time": iso(now - timedelta(seconds=30 - i))} for i in range(5)]
    # An older point sent later never replaces the newer latest value.
    assert svc.post("/metrics/batch", json=batch).status_code == 200
    assert svc.post("/metrics", json={"device_id": device_id, "metric_name": "rssi", "metric_value": 0,
                                      "time": iso(now - timedelta(minutes=5))}).status_code == 200
    before = svc.get(f"/devices/{device_id}/metrics/latest").json()
    assert before["metrics"]["rssi"]["value"] == -66 and before["metrics"]["rssi"]["unit"] == "dBm"
    restart_ready(svc, mqtt)
    after = svc.get(f"/devices/{device_id}/metrics/latest").json()
    assert after == before


def test_latest_values_of_a_deleted_device_are_forgotten(fleet, mqtt):
    """Test whether the latest values of a deleted device leave metrics_latest at the next maintenance pass (the service's start), while another device's stay."""
    svc = fleet()
    gone, kept = register_http(svc)["id"], register_http(svc)["id"]
    for device_id in (gone, kept):
        assert svc.post("/metrics", json={"device_id": device_id, "metric_name": "temperature",
                                          "metric_value": 21.5}).status_code == 200
    latest_rows = lambda d: int(psql_value(svc.database_url, f"SELECT count(*) FROM metrics_latest WHERE device_id = '{d}'"))
    assert latest_rows(gone) == 1 and latest_rows(kept) == 1
    assert svc.delete(f"/devices/{gone}").status_code == 204
    restart_ready(svc, mqtt)  # maintenance runs at start-up (then hourly)
    assert latest_rows(gone) == 0
    assert latest_rows(kept) == 1
    assert svc.get(f"/devices/{kept}/metrics/latest").json()["metrics"]["temperature"]["value"] == 21.5
    assert "telemetry_latest_purged" in svc.log_text()


def test_partitions_are_created_ahead_and_dropped_past_retention(fleet, mqtt):
    """Test whether the start-up maintenance pass creates today's and the next two days' partitions and drops one past retention."""
    svc = fleet()
    today = datetime.now(timezone.utc).date()
    for table in ("metrics", "events"):
        have = partitions(svc, table)
        for i in range(3):
            assert f"{table}_p{(today + timedelta(days=i)):%Y%m%d}" in have, (table, have)
    device_id = register_http(svc)["id"]
    # An old partition with a row in it (as if written long ago), and one still within retention.
    old = today - timedelta(days=91)
    kept = today - timedelta(days=89)
    for day in (old, kept):
        psql(svc.database_url, f"SELECT telemetry_create_partition('metrics', '{day}')")
        psql(svc.database_url, "INSERT INTO metrics (device_id, name_id, time, value)"
                               f" VALUES ('{device_id}', 1, '{day} 12:00:00+00', 1)")
    psql(svc.database_url, f"SELECT telemetry_create_partition('events', '{today - timedelta(days=31)}')")
    assert f"metrics_p{old:%Y%m%d}" in partitions(svc, "metrics")
    restart_ready(svc, mqtt)
    have = partitions(svc, "metrics")
    assert f"metrics_p{old:%Y%m%d}" not in have
    assert f"metrics_p{kept:%Y%m%d}" in have
    assert f"events_p{today - timedelta(days=31):%Y%m%d}" not in partitions(svc, "events")
    assert int(psql_value(svc.database_url, f"SELECT count(*) FROM metrics WHERE device_id = '{device_id}'")) == 1
    assert telemetry_counter(svc, "maestra_telemetry_partitions_dropped_total") == 2
    assert "telemetry_partition_dropped" in svc.log_text()


def test_mqtt_metrics_and_events_are_stored(fleet, mqtt):
    """Test whether telemetry/metrics (flat and structured) and telemetry/events messages are stored and queryable."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    device = mqtt()
    device.publish(metrics_topic(device_id), {"temperature": 23.5, "humidity": 40}, qos=1)
    when = datetime.now(timezone.utc) - timedelta(seconds=5)
    device.publish(metrics_topic(device_id), {"time": iso(when), "unit": {"co2": "ppm"}, "values": {"co2": 415}},
                   qos=1)
    device.publish(events_topic(device_id), {"event_type": "button", "severity": "debug", "data": {"n": 2}}, qos=1)
    wait_until(lambda: len(stored_metrics(svc, device_id)) == 3 and len(stored_events(svc, device_id)) == 1,
               timeout=10, message="MQTT telemetry was not stored")
    assert sorted(stored_metrics(svc, device_id)) == [("co2", 415.0), ("humidity", 40.0), ("temperature", 23.5)]
    latest = svc.get(f"/devices/{device_id}/metrics/latest").json()["metrics"]
    assert latest["co2"] == {"value": 415, "unit": "ppm", "time": iso(when)}
    assert latest["temperature"]["value"] == 23.5
    events = svc.get(f"/devices/{device_id}/events?type=button").json()["events"]
    assert [(e["event_type"], e["severity"], e["data"]) for e in events] == [("button", "debug", {"n": 2})]
    counters = metrics(svc)
    assert counters[("maestra_telemetry_points_total", 'transport="mqtt"')] == 3
    assert counters[("maestra_telemetry_events_total", 'transport="mqtt"')] == 1


def test_mqtt_telemetry_of_unknown_devices_and_bad_payloads_is_dropped_and_counted(fleet, mqtt):
    """Test whether MQTT telemetry of an unregistered device, and invalid payloads, are counted and store nothing."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    stranger = str(uuid.uuid4())
    device = mqtt()
    device.publish(metrics_topic(stranger), {"temperature": 1}, qos=1)
    device.publish(events_topic(stranger), {"event_type": "boot"}, qos=1)
    device.publish(metrics_topic(device_id), {"temperature": "warm"}, qos=1)
    device.publish(metrics_topic(device_id), {f"m{i}": i for i in range(101)}, qos=1)
    device.publish(events_topic(device_id), {"event_type": "boot", "severity": "loud"}, qos=1)
    wait_until(lambda: telemetry_counter(svc, "maestra_telemetry_rejected_total", 'transport="mqtt"') == 5,
               timeout=10, message="the refused MQTT telemetry was not counted")
    assert telemetry_counter(svc, "maestra_telemetry_dropped_total", 'reason="unknown_device"') == 2
    # A good message after them is stored; nothing else was.
    device.publish(metrics_topic(device_id), {"temperature": 2}, qos=1)
    wait_until(lambda: stored_metrics(svc, device_id) == [("temperature", 2.0)], timeout=10)
    assert int(psql_value(svc.database_url, f"SELECT count(*) FROM metrics WHERE device_id = '{stranger}'")) == 0
    assert stored_events(svc, device_id) == []


def test_python_example_sends_and_reads_telemetry(fleet, mosquitto):
    """Test whether examples/python/telemetry.py registers, publishes metrics and events, posts a batch and reads them back."""
    svc = fleet()
    result = subprocess.run(
        ["/usr/bin/python3", str(REPO / "examples" / "python" / "telemetry.py"), "--http", svc.url,
         "--host", mosquitto.host, "--port", str(mosquitto.port), "--count", "3", "--interval", "0.1",
         "--hardware-id", f"py-telemetry-{uuid.uuid4().hex[:8]}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    device_id = result.stdout.split()[1]
    assert sorted({name for name, _ in stored_metrics(svc, device_id)}) == ["battery", "humidity", "temperature"]
    assert len(stored_metrics(svc, device_id)) == 3 * 2 + 10
    assert stored_events(svc, device_id) == [("heartbeat_check", "info")]
    assert "batch: 200" in result.stdout and '"battery"' in result.stdout


def test_a_clean_shutdown_loses_no_mqtt_telemetry(fleet, mqtt):
    """Test whether MQTT telemetry acknowledged by the broker is all stored when the service is stopped (SIGTERM) mid-stream and restarted."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    device = mqtt()
    messages = 20000
    count = lambda: int(psql_value(svc.database_url, f"SELECT count(*) FROM metrics WHERE device_id = '{device_id}'"))
    # Points are told apart by (name, value): QoS 1 is at least once, so a message
    # the service stored but had not acknowledged when it stopped comes again.
    distinct = lambda: int(psql_value(svc.database_url, "SELECT count(DISTINCT (name_id, value)) FROM metrics"
                                                        f" WHERE device_id = '{device_id}'"))
    infos = []

    def publish_all():
        for i in range(messages):
            infos.append(device.client.publish(metrics_topic(device_id), json.dumps({f"m{j}": i for j in range(5)}),
                                               qos=1))

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    try:
        # Stop while the service is taking them and its writer is held up (a
        # lock), so points are queued: what it received is stored at shutdown,
        # what it had not is kept for it in its broker session.
        wait_until(lambda: count() > 0, timeout=20)
        locker = hold_share_lock(svc, "metrics", 1.5)
        time.sleep(0.3)
        try:
            restart_ready(svc, mqtt)
        finally:
            locker.wait(timeout=30)
    finally:
        publisher.join(timeout=120)
    for info in infos:
        info.wait_for_publish(timeout=20)
    assert 0 < len(infos) == messages
    wait_until(lambda: distinct() == 5 * messages, timeout=30,
               message=lambda: f"{distinct()} of {5 * messages} points stored")
    assert count() - 5 * messages <= 5 * 1000, "more redelivered than one in-flight window"


def test_text_times_and_values_are_stored_exactly(fleet, mqtt):
    """Test whether units and tags with backslashes, quotes, tabs, newlines and non-ASCII text, times to the millisecond and extreme values are stored and read back unchanged (over HTTP and over MQTT: one writer, one COPY format)."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    when = datetime.now(timezone.utc).replace(microsecond=123000) - timedelta(seconds=20)
    tags = {"path": "C:\\tmp\\new", "quote": "say \"hi\"", "tab": "a\tb", "line": "x\ny\r", "text": "µg/m³ é"}
    unit = "µg/m³ \\ \"q\""
    r = svc.post("/metrics", json={"device_id": device_id, "metric_name": "dust", "metric_value": -1.5e-300,
                                   "unit": unit, "tags": tags, "time": iso(when)})
    assert r.status_code == 200, r.text
    device = mqtt()
    later = when + timedelta(milliseconds=7)
    device.publish(metrics_topic(device_id), {"time": iso(later), "unit": {"big": unit}, "tags": tags,
                                              "values": {"big": 1.7976931348623157e308}}, qos=1)
    wait_until(lambda: len(stored_metrics(svc, device_id)) == 2, timeout=10, message="MQTT point not stored")
    points = svc.get(f"/devices/{device_id}/metrics").json()["points"]
    got = sorted((p["name"], p["value"], p["unit"], p["tags"], p["time"]) for p in points)
    assert got == [("big", 1.7976931348623157e308, unit, tags, iso(later)),
                   ("dust", -1.5e-300, unit, tags, iso(when))]


def test_mqtt_latest_values_survive_a_clean_stop(fleet, mqtt):
    """Test whether the latest values of MQTT telemetry (written to metrics_latest at most once a second) are all written when the service stops cleanly, so they are served after a restart."""
    svc = fleet()
    device_id = register_http(svc)["id"]
    device = mqtt()
    for i in range(3):
        device.publish(metrics_topic(device_id), {"temperature": 20 + i, f"m{i}": i}, qos=1)
    wait_until(lambda: len(stored_metrics(svc, device_id)) == 6, timeout=10, message="MQTT telemetry was not stored")
    before = svc.get(f"/devices/{device_id}/metrics/latest").json()
    assert before["metrics"]["temperature"]["value"] == 22 and set(before["metrics"]) == {"temperature", "m0", "m1", "m2"}
    restart_ready(svc, mqtt)  # at once: well within the second before the writer would store them anyway
    assert svc.get(f"/devices/{device_id}/metrics/latest").json() == before
