#!/usr/bin/python3
"""Registration latency over HTTP, open mode versus secure mode (per-device
broker accounts through the dynamic-security plugin), measured side by side on
throwaway Postgres and Mosquitto instances started here. Prints one JSON line.

    /usr/bin/python3 bench/registration_latency.py [--count 300]
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import requests  # noqa: E402

from harness import MosquittoBroker, PostgresCluster, ServiceFactory, wait_until  # noqa: E402
from test_security import (ADMIN_TOKEN, DASHBOARD_PASSWORD, DASHBOARD_USER, PROVISIONING_KEY,  # noqa: E402
                           SERVICE_PASSWORD, SERVICE_USER, SecureBroker)


def measure(service, count, prefix, headers):
    session = requests.Session()
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        r = session.post(f"{service.url}/devices/register", headers=headers,
                         json={"name": f"{prefix}-{i}", "device_type": "bench", "hardware_id": f"{prefix}-{i}"})
        latencies.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 201, r.text
    latencies.sort()
    return {"count": count, "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2), "mean_ms": round(statistics.mean(latencies), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maestra-reg-bench-"))
    postgres = PostgresCluster().start()
    open_broker = MosquittoBroker(work / "open").start()
    secure_broker = SecureBroker(work / "secure").start()
    factory = ServiceFactory(postgres, open_broker, work / "logs")
    try:
        open_service = factory()
        secure_service = factory(broker=secure_broker, MAESTRA_SECURE="true", MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN,
                                 MAESTRA_PROVISIONING_KEY=PROVISIONING_KEY, MAESTRA_MQTT_USERNAME=SERVICE_USER,
                                 MAESTRA_MQTT_PASSWORD=SERVICE_PASSWORD, MAESTRA_DASHBOARD_USERNAME=DASHBOARD_USER,
                                 MAESTRA_DASHBOARD_PASSWORD=DASHBOARD_PASSWORD)
        wait_until(lambda: "secure_mode_ready" in secure_service.log_text(), timeout=20)
        result = {
            "open": measure(open_service, args.count, "open", {}),
            "secure": measure(secure_service, args.count, "secure", {"X-Provisioning-Key": PROVISIONING_KEY}),
        }
        result["secure_over_open_p50"] = round(result["secure"]["p50_ms"] / result["open"]["p50_ms"], 2)
        print(json.dumps(result))
    finally:
        factory.close()
        secure_broker.stop()
        open_broker.stop()
        postgres.cleanup()


if __name__ == "__main__":
    main()
