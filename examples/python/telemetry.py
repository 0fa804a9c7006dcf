#!/usr/bin/python3
"""Telemetry from a Maestra device, in Python (python3-paho-mqtt and python3-requests).

Demonstrates the telemetry routes and topics of the service:
  1. register over HTTP (POST /devices/register; a 409 carries the existing id),
  2. every --interval seconds publish a few readings on
     maestra/devices/{id}/telemetry/metrics ({"temperature":..,"humidity":..}),
     and now and then an event on .../telemetry/events,
  3. send a batch of readings over HTTP (POST /metrics/batch, answered once stored),
  4. read them back: GET /devices/{id}/metrics/latest and 1-minute averages.

    python3 examples/python/telemetry.py --http http://127.0.0.1:8080 --host 127.0.0.1 --count 10
"""
import argparse
import json
import math
import random
import time
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import requests


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--http", default="http://127.0.0.1:8080", help="the service's HTTP address")
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--prefix", default="maestra", help="topic prefix (default maestra)")
    p.add_argument("--hardware-id", default="python-telemetry-1", help="unique hardware id")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between MQTT readings (default 1)")
    p.add_argument("--count", type=int, default=10, help="MQTT readings to send (default 10)")
    return p.parse_args()


def register(args) -> str:
    body = {"name": "Python telemetry", "device_type": "raspberry_pi", "hardware_id": args.hardware_id}
    r = requests.post(f"{args.http}/devices/register", json=body, timeout=10)
    if r.status_code == 409:  # registered before: the answer carries its id
        return r.json()["id"]
    r.raise_for_status()
    return r.json()["id"]


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def main():
    args = parse_args()
    device_id = register(args)
    print("device", device_id)

    client = mqtt.Client(client_id=f"telemetry-{device_id}"[:64], protocol=mqtt.MQTTv311)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    metrics_topic = f"{args.prefix}/devices/{device_id}/telemetry/metrics"
    events_topic = f"{args.prefix}/devices/{device_id}/telemetry/events"
    for i in range(args.count):
        reading = {"temperature": round(21 + 2 * math.sin(i / 5) + random.random() / 10, 2),
                   "humidity": round(40 + random.random() * 5, 1)}
        client.publish(metrics_topic, json.dumps(reading), qos=1).wait_for_publish(5)
        if i % 5 == 0:
            event = {"event_type": "heartbeat_check", "severity": "info", "message": f"reading {i}",
                     "data": {"index": i}}
            client.publish(events_topic, json.dumps(event), qos=1).wait_for_publish(5)
        time.sleep(args.interval)
    client.loop_stop()
    client.disconnect()

    # Readings a device buffered while offline, sent at once with their own times.
    now = datetime.now(timezone.utc)
    batch = [{"device_id": device_id, "metric_name": "battery", "metric_value": 100 - i, "unit": "%",
              "time": iso(now - timedelta(minutes=10 - i))} for i in range(10)]
    r = requests.post(f"{args.http}/metrics/batch", json=batch, timeout=10)
    print("batch:", r.status_code, r.text)

    time.sleep(1)  # MQTT readings are stored within a second
    latest = requests.get(f"{args.http}/devices/{device_id}/metrics/latest", timeout=10).json()
    print("latest:", json.dumps(latest["metrics"], indent=1))
    series = requests.get(f"{args.http}/devices/{device_id}/metrics",
                          params={"name": "temperature", "bucket": "1m", "agg": "avg",
                                  "from": iso(now - timedelta(hours=1))}, timeout=10).json()
    for bucket in series["buckets"]:
        print("temperature", bucket["time"], "avg", round(bucket["value"], 2), "of", bucket["count"])
    events = requests.get(f"{args.http}/devices/{device_id}/events", params={"limit": 3}, timeout=10).json()
    print("events:", [(e["time"], e["event_type"], e["message"]) for e in events["events"]])


if __name__ == "__main__":
    main()
