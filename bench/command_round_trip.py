#!/usr/bin/python3
"""Commands to devices, end to end: 1,000 simulated devices (fleet-sim
--answer-commands, each its own MQTT connection, answering "succeeded" at once)
on throwaway Postgres and Mosquitto instances started here. Prints one JSON line:

- round_trip: commands posted at a steady --rate (default 100/s) for --seconds,
  each POST /devices/{id}/commands?wait=10 to a random device; the latency is
  the POST until its answer with state "succeeded" (the device's reply seen by
  the caller): p50, p99, max.
- throughput: --rounds fan-outs (POST /commands to every device of the fleet,
  --parallel at a time); commands/s = commands completed (succeeded) / the
  time from the first POST to the last command's succeeded. Also, over that
  phase: CPU ms per command of the service, Postgres (every backend),
  Mosquitto and fleet-sim (from /proc: on a shared machine, commands/s follows
  the CPU the others leave; the cost per command does not), and the moves per
  statement of the service's batched acks and replies (its /metrics).

    /usr/bin/python3 bench/command_round_trip.py [--devices 1000] [--rate 100] [--seconds 10] [--rounds 10]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import requests  # noqa: E402

from harness import MosquittoBroker, PostgresCluster, ServiceFactory, psql_value, wait_until  # noqa: E402

BUILD = Path(os.environ.get("MAESTRA_BUILD_DIR", REPO / "build"))
DEVICE_TYPE = "bench-commands"


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values))) - 1))]


def session():
    s = requests.Session()
    s.trust_env = False
    return s


def round_trip(url, ids, rate, seconds):
    local = threading.local()
    latencies, failures = [], []
    lock = threading.Lock()

    def one(device_id):
        s = getattr(local, "s", None) or session()
        local.s = s
        started = time.perf_counter()
        r = s.post(f"{url}/devices/{device_id}/commands", params={"wait": 10}, json={"name": "bench.ping"}, timeout=20)
        took = (time.perf_counter() - started) * 1000
        with lock:
            if r.status_code == 201 and r.json()["state"] == "succeeded":
                latencies.append(took)
            else:
                failures.append(f"{r.status_code} {r.text[:200]}")

    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=64) as pool:
        began = time.perf_counter()
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, random.choice(ids))
    latencies.sort()
    return {"offered_per_s": rate, "commands": total, "succeeded": len(latencies), "failed": len(failures),
            "p50_ms": round(statistics.median(latencies), 2), "p99_ms": round(percentile(latencies, 99), 2),
            "max_ms": round(latencies[-1], 2), "first_failure": failures[0] if failures else None}


def stored_breakdown(database_url):
    """Where the round trip's time went, as stored: created -> sent (the broker's
    ack) and sent -> succeeded (the device's reply stored), p50 and p99 in ms."""
    sql = """WITH h AS (SELECT c.id, c.created_at,
                        max(h.at) FILTER (WHERE h.to_state = 'sent') AS sent,
                        max(h.at) FILTER (WHERE h.to_state = 'succeeded') AS done
                   FROM commands c JOIN command_history h ON h.command_id = c.id
                   WHERE c.name = 'bench.ping' GROUP BY c.id, c.created_at)
             SELECT concat_ws(' ',
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch from sent - created_at) * 1000),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch from sent - created_at) * 1000),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch from done - sent) * 1000),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch from done - sent) * 1000))
             FROM h WHERE sent IS NOT NULL AND done IS NOT NULL"""
    values = [round(float(v), 2) for v in psql_value(database_url, sql).split()]
    return {"to_sent_p50": values[0], "to_sent_p99": values[1], "sent_to_succeeded_p50": values[2],
            "sent_to_succeeded_p99": values[3]}


def cpu_ticks(pids):
    """utime + stime of these processes and their children, in clock ticks (/proc)."""
    total = 0
    seen = set()
    todo = [p for p in pids if p]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            todo += [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                     for c in (t / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total


def metric(url, name):
    for line in session().get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def throughput(url, database_url, devices, rounds, parallel, processes):
    before = int(psql_value(database_url, "SELECT count(*) FROM commands WHERE state = 'succeeded'"))
    errors = []
    cpu_before = {name: cpu_ticks(pids) for name, pids in processes.items()}
    batches_before = (metric(url, "maestra_command_batches_total"), metric(url, "maestra_command_batch_moves_total"))

    def fan_out(_):
        r = session().post(f"{url}/commands", json={"name": "bench.fan_out", "device_type": DEVICE_TYPE}, timeout=120)
        if r.status_code != 201 or len(r.json()) != devices:
            errors.append(f"{r.status_code} {r.text[:200]}")

    began = time.time()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(fan_out, range(rounds)))
    posted = time.time()
    want = before + rounds * devices
    count = lambda: int(psql_value(database_url, "SELECT count(*) FROM commands WHERE state = 'succeeded'"))  # noqa: E731
    wait_until(lambda: count() >= want, timeout=600, interval=0.5, message=lambda: f"succeeded {count()} of {want}")
    last = float(psql_value(database_url, "SELECT extract(epoch from max(updated_at)) FROM commands"
                                          " WHERE name = 'bench.fan_out'"))
    done = rounds * devices
    hz = os.sysconf("SC_CLK_TCK")
    cpu_ms = {name: round((cpu_ticks(pids) - cpu_before[name]) / hz * 1000 / done, 3)
              for name, pids in processes.items()}
    batches = metric(url, "maestra_command_batches_total") - batches_before[0]
    moves = metric(url, "maestra_command_batch_moves_total") - batches_before[1]
    return {"commands": done, "rounds": rounds, "parallel": parallel, "errors": len(errors),
            "post_s": round(posted - began, 2), "seconds": round(last - began, 2),
            "per_s": round(done / (last - began), 1), "cpu_ms_per_command": cpu_ms,
            "moves_per_statement": round(moves / batches, 1) if batches else None}


def postmaster(postgres):
    try:
        return int((postgres.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maestra-cmd-bench-"))
    postgres = PostgresCluster().start()
    broker = MosquittoBroker(work / "broker").start()
    factory = ServiceFactory(postgres, broker, work / "logs")
    sim = None
    try:
        service = factory(MAESTRA_HTTP_THREADS="128")
        ids_file = work / "ids.txt"
        sim = subprocess.Popen(
            [str(BUILD / "tools" / "fleet-sim" / "fleet-sim"), "--host", "127.0.0.1", "--port", str(broker.port),
             "--http", service.url, "--devices", str(args.devices), "--device-type", DEVICE_TYPE,
             "--run-id", "cmd", "--write-ids", str(ids_file), "--answer-commands", "--duration", "3600", "--quiet"],
            stdout=open(work / "fleet-sim.out", "w"), stderr=subprocess.STDOUT)
        wait_until(lambda: ids_file.exists() and len(ids_file.read_text().split()) == args.devices, timeout=120)
        ids = ids_file.read_text().split()
        probe = session()
        # Every device subscribed and answering: the last one answers a probe.
        wait_until(lambda: probe.post(f"{service.url}/devices/{ids[-1]}/commands", params={"wait": 2},
                                      json={"name": "bench.probe"}).json()["state"] == "succeeded", timeout=60)
        time.sleep(1)
        result = {"devices": args.devices,
                  "round_trip": round_trip(service.url, ids, args.rate, args.seconds),
                  "round_trip_stored_ms": stored_breakdown(service.database_url),
                  "throughput": throughput(service.url, service.database_url, args.devices, args.rounds, args.parallel,
                                           {"service": [service.pid], "postgres": [postmaster(postgres)],
                                            "mosquitto": [broker.proc.pid if broker.proc else None],
                                            "fleet_sim": [sim.pid]})}
        print(json.dumps(result))
    finally:
        if sim:
            sim.terminate()
            try:
                sim.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sim.kill()
        factory.close()
        broker.stop()
        postgres.cleanup()


if __name__ == "__main__":
    main()
