#!/usr/bin/python3
"""Start-up binding of device broker accounts to their client ids, at scale: a
dynamic-security file holding N device accounts made the way versions before the
binding made them (no client id), a throwaway Postgres and a secure Mosquitto
started here, then the service started twice. Reports how long the first start
took to bind every account (the service's own `device_accounts_bound ms=`, plus
the wall time from process start), checks in the plugin's file that every
account is bound to its own id, and how long the second, idempotent start took
(it binds nothing). Prints one JSON line.

    /usr/bin/python3 bench/client_id_binding.py [--devices 3000]
"""
import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from harness import PostgresCluster, ServiceFactory, wait_until  # noqa: E402
from test_security import (ADMIN_TOKEN, DASHBOARD_PASSWORD, DASHBOARD_USER, SERVICE_PASSWORD,  # noqa: E402
                           SERVICE_USER, SecureBroker)


def add_unbound_devices(dynsec: Path, count: int) -> list[str]:
    doc = json.loads(dynsec.read_text())
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for device in ids:
        doc.setdefault("clients", []).append({"username": device, "textname": "maestra device",
                                              "roles": [{"rolename": f"maestra-device-{device}"}]})
        base = f"maestra/devices/{device}"
        doc.setdefault("roles", []).append({"rolename": f"maestra-device-{device}", "acls": [
            {"acltype": "publishClientSend", "topic": f"{base}/heartbeat", "priority": 0, "allow": True},
            {"acltype": "publishClientSend", "topic": f"{base}/presence", "priority": 0, "allow": True},
            {"acltype": "publishClientSend", "topic": f"{base}/telemetry/#", "priority": 0, "allow": True},
            {"acltype": "subscribePattern", "topic": f"{base}/commands/#", "priority": 0, "allow": True}]})
    dynsec.write_text(json.dumps(doc))
    return ids


def timed_start(factory, broker, offset_of):
    started = time.monotonic()
    service = factory(broker=broker, MAESTRA_SECURE="true", MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN,
                      MAESTRA_MQTT_USERNAME=SERVICE_USER, MAESTRA_MQTT_PASSWORD=SERVICE_PASSWORD,
                      MAESTRA_DASHBOARD_USERNAME=DASHBOARD_USER, MAESTRA_DASHBOARD_PASSWORD=DASHBOARD_PASSWORD)
    offset = offset_of(service)
    wait_until(lambda: "device_accounts_bound" in service.log_text()[offset:], timeout=600, interval=0.05,
               message=service.log_tail)
    wall = time.monotonic() - started
    line = next(l for l in service.log_text()[offset:].splitlines() if "device_accounts_bound" in l)
    fields = dict(re.findall(r"(\w+)=(\S+)", line))
    return service, {"bound_now": int(fields["bound_now"]), "already_bound": int(fields["already_bound"]),
                     "failed": int(fields["failed"]), "binding_ms": int(fields["ms"]),
                     "wall_s_from_process_start": round(wall, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=3000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maestra-binding-bench-"))
    postgres = PostgresCluster().start()
    broker = SecureBroker(work / "secure")
    ids = add_unbound_devices(broker.dynsec, args.devices)
    broker.start()
    factory = ServiceFactory(postgres, broker, work / "logs")
    try:
        service, first = timed_start(factory, broker, lambda s: 0)
        clients = {c["username"]: c.get("clientid") for c in json.loads(broker.dynsec.read_text())["clients"]}
        first["devices_bound_in_file"] = sum(1 for d in ids if clients.get(d) == d)
        offset = len(service.log_text())
        restart = time.monotonic()
        service.restart()
        wait_until(lambda: "device_accounts_bound" in service.log_text()[offset:], timeout=600, interval=0.05)
        line = next(l for l in service.log_text()[offset:].splitlines() if "device_accounts_bound" in l)
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        second = {"bound_now": int(fields["bound_now"]), "already_bound": int(fields["already_bound"]),
                  "binding_ms": int(fields["ms"]), "wall_s_from_restart": round(time.monotonic() - restart, 2)}
        print(json.dumps({"devices": args.devices, "first_start": first, "second_start": second}))
    finally:
        factory.close()
        broker.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
