#!/usr/bin/python3
"""Single-will latency: devices that die one at a time (each will alone, more
than the will gate's 100 ms burst window apart), from the moment the device's
TCP connection is cut to the moment its `offline` status (reason `will`) reaches
a subscriber. Throwaway Postgres, Mosquitto and fleet-manager started here
(FLEET_MANAGER_BIN, or build/fleet-manager). Prints one JSON line:
{"count","p50_ms","p99_ms","max_ms","missed"}.

    /usr/bin/python3 bench/single_wills.py [--count 100] [--spacing-ms 150]

Bounded: every wait has a timeout; the run ends after count kills.
"""
import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from harness import MosquittoBroker, PostgresCluster, ServiceFactory, mqtt_client  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100, help="devices killed, one at a time (1-1000)")
    parser.add_argument("--spacing-ms", type=int, default=150, help="time between kills (>= 110: no bursts)")
    args = parser.parse_args()
    count = max(1, min(args.count, 1000))
    work = Path(tempfile.mkdtemp(prefix="maestra-will-bench-"))
    postgres = PostgresCluster().start()
    broker = MosquittoBroker(work / "broker").start()
    factory = ServiceFactory(postgres, broker, work / "logs")
    clients = []
    try:
        service = factory()
        ids = []
        for i in range(count):
            r = service.post("/devices/register", json={"name": f"will-{i}", "device_type": "bench",
                                                        "hardware_id": f"will-bench-{i}"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        offline_at = {}
        cond = threading.Condition()
        watcher = mqtt_client(broker)

        will_at = {}

        def on_message(_client, _userdata, message):
            if message.topic.endswith("/presence"):
                if message.payload == b"offline" and not message.retain:
                    will_at.setdefault(message.topic.split("/")[2], time.monotonic())
                return
            doc = json.loads(message.payload or b"{}")
            if doc.get("status") == "offline" and doc.get("reason") == "will":
                with cond:
                    offline_at.setdefault(doc.get("device_id"), time.monotonic())
                    cond.notify_all()
        watcher.client.on_message = on_message
        watcher.subscribe("maestra/devices/+/status")
        watcher.subscribe("maestra/devices/+/presence")
        for device_id in ids:
            presence = f"maestra/devices/{device_id}/presence"
            device = mqtt_client(broker, will=(presence, b"offline", 1, True))
            device.publish(presence, b"online", qos=1, retain=True)
            clients.append(device)
        time.sleep(0.5)
        latencies, missed, will_latencies = [], 0, []
        for device_id, device in zip(ids, clients):
            device.client.loop_stop()  # (joins paho's thread: up to 1 s, not timed)
            sock = device.client.socket()
            killed = time.monotonic()
            sock.shutdown(socket.SHUT_RDWR)  # the connection dies: the broker sends the will
            sock.close()
            with cond:
                cond.wait_for(lambda: device_id in offline_at, timeout=2.0)
            if device_id in offline_at:
                latencies.append((offline_at[device_id] - killed) * 1000)
            if device_id in will_at:
                will_latencies.append((will_at[device_id] - killed) * 1000)
            else:
                missed += 1
            time.sleep(max(0.0, args.spacing_ms / 1000 - (time.monotonic() - killed)))
        latencies.sort()
        result = {"count": count, "missed": missed}
        if latencies:
            result.update({"p50_ms": round(statistics.median(latencies), 1),
                           "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
                           "max_ms": round(latencies[-1], 1)})
        if will_latencies:  # the broker's part: the will itself reaching a plain subscriber
            result["will_seen_p50_ms"] = round(statistics.median(will_latencies), 1)
        print(json.dumps(result))
    finally:
        for client in clients:
            client.client.loop_stop()
        factory.close()
        broker.stop()
        postgres.cleanup()


if __name__ == "__main__":
    main()
