#!/usr/bin/python3
"""Number crunching for scripts/bench.sh: it collects raw measurements as JSON
lines ({"k": key, "v": value}) and calls the subcommands below to reduce tool
output (fleet-sim, wrk, pgbench, metric samples) and, at the end, to print the
table and write the JSON file. Standard library only.

    report.py rate SAMPLES                    steady rate of a sampled counter
    report.py presence KILL_JSON KILLED ARRIVALS
    report.py timeouts ARRIVALS DEADLINE_MS COUNT
    report.py wrk OUTPUT                      wrk --latency output -> JSON
    report.py pgbench OUTPUT                  pgbench -r output -> JSON
    report.py flush-statement SQL_FILE        src/store/sql/flush_last_seen.sql for pgbench
    report.py render RAW OUT_JSON [--smoke] [--plot-data FILE]
"""
import json
import math
import re
import sys


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --- rate of a sampled counter -------------------------------------------------------

def steady_rate(path):
    """SAMPLES lines: `epoch_ms heartbeats flushed_rows flush_seconds flushes`.
    The rate is measured between the first sample after the counter started
    moving and the last sample before it stopped, so the partial intervals at
    both ends (connect phase, drain) do not dilute it."""
    samples = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and all(re.fullmatch(r"[-+0-9.eE]+", p) for p in parts[:5]):
                samples.append([float(p) for p in parts[:5]])
    out = {"samples": len(samples)}
    if len(samples) < 2:
        return out
    base = samples[0][1]
    final = samples[-1][1]
    out.update(first_count=base, final_count=final, heartbeats=final - base)
    moving = [i for i in range(1, len(samples)) if samples[i][1] != samples[i - 1][1]]
    if not moving:
        return out
    start = moving[0]          # first sample that saw progress
    end = moving[-1]           # last sample that saw progress
    out["first_progress_ms"] = samples[start][0]
    out["last_progress_ms"] = samples[end][0]
    if end - start >= 2:
        dt = (samples[end - 1][0] - samples[start][0]) / 1000.0
        if dt > 0:
            out["rate"] = (samples[end - 1][1] - samples[start][1]) / dt
    if "rate" not in out:
        dt = (samples[end][0] - samples[start - 1][0]) / 1000.0
        if dt > 0:
            out["rate"] = (samples[end][1] - samples[start - 1][1]) / dt
    rows = samples[-1][2] - samples[0][2]
    seconds = samples[-1][3] - samples[0][3]
    flushes = samples[-1][4] - samples[0][4]
    out.update(flushed_rows=rows, flush_seconds=seconds, flushes=flushes)
    if seconds > 0:
        out["flush_rows_per_s"] = rows / seconds
    if flushes > 0:
        out["flush_mean_ms"] = seconds / flushes * 1000.0
        out["flush_mean_rows"] = rows / flushes
    return out


# --- presence latency --------------------------------------------------------------------

def read_arrivals(path):
    """fleet-sim --print-arrivals lines: `epoch_ms topic payload`."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("{") or not line.strip():
                continue
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) < 3 or not parts[0].isdigit():
                continue
            try:
                doc = json.loads(parts[2])
            except ValueError:
                continue
            levels = parts[1].split("/")
            device = levels[-2] if len(levels) >= 2 else ""
            yield int(parts[0]), device, doc


def presence(kill_json, killed_file, arrivals):
    kill = None
    with open(kill_json) as f:
        for line in f:
            if line.startswith('{"event":"kill"'):
                kill = json.loads(line)
    if kill is None:
        return {"error": "no kill event in " + kill_json}
    with open(killed_file) as f:
        killed = {line.strip() for line in f if line.strip()}
    latency = {}
    other_reasons = 0
    for ms, device, doc in read_arrivals(arrivals):
        if device in killed and doc.get("status") == "offline" and device not in latency:
            if doc.get("reason") != "will":
                other_reasons += 1
            latency[device] = ms - kill["kill_epoch_ms"]
    values = sorted(latency.values())
    out = {"killed": len(killed), "seen": len(values), "missed": len(killed) - len(values),
           "not_will": other_reasons, "close_ms": kill.get("close_ms")}
    if values:
        out.update(p50_ms=percentile(values, 50), p99_ms=percentile(values, 99), max_ms=values[-1],
                   min_ms=values[0])
    return out


# --- timeouts ------------------------------------------------------------------------------

def timeouts(arrivals, deadline_ms, count):
    deadline_ms = int(deadline_ms)
    count = int(count)
    first = {}
    for ms, device, doc in read_arrivals(arrivals):
        if doc.get("status") == "offline" and device not in first:
            first[device] = ms - deadline_ms
    values = sorted(first.values())
    out = {"devices": count, "seen": len(values), "missed": count - len(values),
           "within_1s": sum(1 for v in values if v <= 1000)}
    if values:
        out.update(p50_ms=percentile(values, 50), p99_ms=percentile(values, 99), max_ms=values[-1],
                   min_ms=values[0])
    return out


# --- wrk and pgbench --------------------------------------------------------------------------

def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(path):
    text = open(path).read()
    out = {}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([0-9.]+)(\w+)", text)
    if m:
        out["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("75", "p75_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+" + pct + r"%\s+([0-9.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            out[key] = round(to_ms(m.group(1), m.group(2)), 3)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(x) for x in m.groups()[:3]) if m else 0
    out["timeouts"] = int(m.group(4)) if m else 0
    return out


def pgbench(path):
    text = open(path).read()
    out = {}
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    if m:
        out["tps"] = float(m.group(1))
    m = re.search(r"number of transactions actually processed: (\d+)", text)
    if m:
        out["transactions"] = int(m.group(1))
    m = re.search(r"number of failed transactions: (\d+)", text)
    out["failed"] = int(m.group(1)) if m else 0
    m = re.search(r"latency average = ([0-9.]+) ms", text)
    if m:
        out["latency_avg_ms"] = float(m.group(1))
    # per-statement latencies (-r): "         0.123           0  UPDATE ..."
    statements = []
    for line in text.splitlines():
        m = re.match(r"^\s+([0-9.]+)\s+(\d+)\s+(\S.*)$", line)
        if m:
            statements.append({"ms": float(m.group(1)), "failures": int(m.group(2)), "sql": m.group(3)[:60]})
    if statements:
        out["statements"] = statements
    return out


# --- the service's flush statement ------------------------------------------------------------

# The parameters of src/store/sql/flush_last_seen.sql, in order, with their
# types: the names are the pgbench variables bench/flush_prologue.sql sets.
FLUSH_PARAMETERS = [("ids", "uuid[]"), ("ms", "bigint[]"), ("session", "bigint[]"),
                    ("firmware_version", "text[]"), ("ip_address", "text[]"), ("metadata", "text[]")]


def flush_statement(path):
    """The service's flush_last_seen statement as a pgbench command: comment
    lines dropped, $n replaced by the prologue's variables, ending in ";".
    None when its parameters are not the ones the prologue binds."""
    lines = [line for line in open(path).read().splitlines() if not line.lstrip().startswith("--")]
    sql = "\n".join(lines).strip().rstrip(";")
    used = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
    if used != list(range(1, len(FLUSH_PARAMETERS) + 1)):
        return None  # a signature this benchmark does not know
    for n, (_, sql_type) in enumerate(FLUSH_PARAMETERS, 1):
        if f"${n}::{sql_type}" not in sql:
            return None
    return re.sub(r"\$(\d+)", lambda m: ":" + FLUSH_PARAMETERS[int(m.group(1)) - 1][0], sql) + ";"


# --- the table ----------------------------------------------------------------------------

def load_raw(path):
    raw, errors = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec.get("k") == "error":
                errors.append(rec["v"])
            else:
                raw[rec["k"]] = rec["v"]
    return raw, errors


def num(raw, key):
    v = raw.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fmt(v, digits=None):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    a = abs(v)
    if digits is None:
        digits = 0 if a >= 100 else 1 if a >= 10 else 2
    return f"{v:,.{digits}f}"


def build_rows(raw):
    """(measurement, value, unit, baseline-name, baseline, ratio, target text, met, smoke-check)"""
    rows = []

    def row(name, value, unit="", base_name="", base=None, ratio=None, target="", met=None, positive=True):
        rows.append({"measurement": name, "value": value, "unit": unit, "baseline_name": base_name,
                     "baseline": base, "ratio": ratio, "target": target, "met": met, "positive": positive})

    def ratio_of(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    # 1 + 2: ingest against the broker ceiling, per offered load.
    loads = raw.get("loads", [])
    for load in loads:
        label = "unthrottled" if load == 0 else f"{load:,}/s"
        ceiling = num(raw, f"ceiling.{load}.rate")
        ingest = num(raw, f"ingest.{load}.rate")
        r = ratio_of(ingest, ceiling)
        row(f"MQTT ingest, offered {label} (heartbeats/s)", ingest, "/s", "broker ceiling", ceiling, r,
            "ratio >= 0.8", None if r is None else r >= 0.8)
        lost = num(raw, f"ingest.{load}.lost")
        if lost is not None:
            dropped = " (broker dropped: queue full)" if raw.get(f"ingest.{load}.broker_dropped") else ""
            row(f"  heartbeats acknowledged by the broker, never processed{dropped}", lost, "",
                "sent", num(raw, f"ingest.{load}.publisher_sent"), None, "0", lost == 0, positive=False)
        rows_written = num(raw, f"ingest.{load}.flushed_rows")
        first, last = num(raw, f"ingest.{load}.first_progress_ms"), num(raw, f"ingest.{load}.last_progress_ms")
        if rows_written and first and last and last > first:
            row(f"  last_seen rows written per second (coalesced), {label}", rows_written / ((last - first) / 1000.0),
                "/s", "", None, None, "(info)", None)
        lag = num(raw, f"ingest.{load}.persist_lag_ms")
        if lag is not None:
            row(f"  last_seen lag in Postgres after the run, {label}", lag, "ms", "", None, None, "<= 1000 ms",
                lag <= 1000, positive=False)
    # 3: database
    naive = num(raw, "db.naive.tps")
    ran_db = raw.get("ran.db")
    best_ingest = None
    for load in loads:
        v = num(raw, f"ingest.{load}.rate")
        if v is not None and raw.get(f"ingest.{load}.persisted") and (best_ingest is None or v > best_ingest):
            best_ingest = v
    r = ratio_of(best_ingest, naive)
    if ran_db and loads:
        row("Persisted heartbeats/s (service, best load) vs naive txn/heartbeat", best_ingest, "/s",
            "naive pgbench tps", naive, r, "ratio >= 10", None if r is None else r >= 10)
    naive_async = num(raw, "db.naive_async.tps")
    if naive_async is not None:
        r2 = ratio_of(best_ingest, naive_async)
        row("  same, naive with synchronous_commit=off", best_ingest, "/s", "naive tps (async commit)",
            naive_async, r2, "(info)", None)
    batched = num(raw, "db.batched.rows_per_s")
    if ran_db:
        row("Naive: one transaction per heartbeat, 8 clients (tps)", naive, "/s", "", None, None, "(info)", None)
        row("Batched flush statement, 5,000-row arrays (rows/s)", batched, "/s", "naive pgbench tps", naive,
            ratio_of(batched, naive), "(info)", None)
    svc_flush = num(raw, "ingest.flush_rows_per_s")
    if svc_flush is not None:
        row("  service's own flushes: rows per second of flush time", svc_flush, "/s", "", None, None, "(info)",
            None)
    # 4: HTTP
    if raw.get("ran.http"):
        hb, health = num(raw, "http.heartbeat.rps"), num(raw, "http.health.rps")
        r = ratio_of(hb, health)
        row("HTTP POST /devices/heartbeat, 64 conns (req/s)", hb, "/s", "GET /health req/s", health, r,
            "ratio >= 0.5", None if r is None else r >= 0.5)
        p50, p99 = num(raw, "http.heartbeat.p50_ms"), num(raw, "http.heartbeat.p99_ms")
        row("  heartbeat latency p50", p50, "ms", "/health p50", num(raw, "http.health.p50_ms"), None, "(info)",
            None)
        row("  heartbeat latency p99 (requests answered)", p99, "ms", "/health p99", num(raw, "http.health.p99_ms"),
            None, "< 10 ms", None if p99 is None else p99 < 10)
        probe_max = num(raw, "http.probe.max_ms")
        if probe_max is not None:
            row("  a 65th client's GET /health during the load, max", probe_max, "ms",
                "p50", num(raw, "http.probe.p50_ms"), None, "< 10 ms", probe_max < 10)
        timeouts = num(raw, "http.heartbeat.timeouts")
        if timeouts:
            row("  wrk connections unanswered for 2 s (timeout count)", timeouts, "", "", None, None, "0", False,
                positive=False)
    # 5: presence
    if "presence.killed" in raw:
        p99 = num(raw, "presence.p99_ms")
        missed = num(raw, "presence.missed")
        row(f"Presence: {int(raw['presence.killed']):,} killed, will -> offline p50", num(raw, "presence.p50_ms"),
            "ms", "", None, None, "(info)", None)
        row("  will -> offline p99", p99, "ms", "", None, None, "< 250 ms", None if p99 is None else p99 < 250)
        row("  will -> offline max", num(raw, "presence.max_ms"), "ms", "", None, None, "(info)", None)
        row("  offline documents missed", missed, "", "", None, None, "0", None if missed is None else missed == 0,
            positive=False)
    if "presence_single.count" in raw:
        p99 = num(raw, "presence_single.p99_ms")
        missed = num(raw, "presence_single.missed")
        row(f"Presence: {int(raw['presence_single.count']):,} single wills (150 ms apart), will -> offline p50",
            num(raw, "presence_single.p50_ms"), "ms", "", None, None, "(info)", None)
        row("  single will -> offline p99", p99, "ms", "", None, None, "< 50 ms", None if p99 is None else p99 < 50)
        row("  single wills missed", missed, "", "", None, None, "0", None if missed is None else missed == 0,
            positive=False)
    # 6: timeouts
    if "timeouts.devices" in raw:
        n = int(raw["timeouts.devices"])
        after = raw.get("timeouts.offline_after_s")
        within = num(raw, "timeouts.within_1s")
        # A timing target, not a sanity check (zero within the second on a loaded
        # machine is a slow run, not a broken one): sanity is that they all went offline.
        row(f"Timeouts: {n:,} silent devices offline within offline_after ({after} s) + 1 s", within, "devices",
            "devices", float(n), ratio_of(within, float(n)), "all", None if within is None else within == n,
            positive=False)
        seen = num(raw, "timeouts.seen")
        row("  silent devices seen going offline (status documents)", seen, "devices", "devices", float(n),
            ratio_of(seen, float(n)), "all", None if seen is None else seen == n)
        row("  lateness after the deadline p50", num(raw, "timeouts.p50_ms"), "ms", "", None, None, "(info)", None,
            positive=False)
        row("  lateness after the deadline p99", num(raw, "timeouts.p99_ms"), "ms", "", None, None, "< 1000 ms",
            None if num(raw, "timeouts.p99_ms") is None else num(raw, "timeouts.p99_ms") < 1000, positive=False)
        row("  lateness after the deadline max", num(raw, "timeouts.max_ms"), "ms", "", None, None, "< 1000 ms",
            None if num(raw, "timeouts.max_ms") is None else num(raw, "timeouts.max_ms") < 1000, positive=False)
        row("  service CPU time for the timeouts", num(raw, "timeouts.cpu_s"), "s", "", None, None, "(info)", None,
            positive=False)
        if "timeouts.floor.p99_ms" in raw:
            # The same documents through the same broker to the same subscriber with no service and no
            # Postgres, written at once (bench/storm_floor.py): what no service could beat on this machine.
            floor = num(raw, "timeouts.floor.p99_ms")
            late = num(raw, "timeouts.p99_ms")
            row("  floor: the broker and subscriber alone, p99 after the first byte", floor, "ms",
                "storm p99", late, ratio_of(late, floor), "(info)", None, positive=False)
            row("  floor: broker CPU", num(raw, "timeouts.floor.broker_cpu_s"), "s", "", None, None, "(info)", None,
                positive=False)
        if "timeouts.postgres_cpu_s" in raw:
            row("  Postgres CPU time for the timeouts", num(raw, "timeouts.postgres_cpu_s"), "s", "", None, None,
                "(info)", None, positive=False)
            row("  broker CPU time for the timeouts", num(raw, "timeouts.broker_cpu_s"), "s", "", None, None,
                "(info)", None, positive=False)
    # 7: scale
    if "scale.devices" in raw:
        n = int(raw["scale.devices"])
        row(f"Scale: {n:,} devices, service RSS", num(raw, "scale.rss_mb"), "MB", "", None, None, "(info)", None)
        row("  start-up: process start to /health 200", num(raw, "scale.startup_ms"), "ms", "", None, None,
            "(info)", None)
        row("  start-up: registry_loaded", num(raw, "scale.registry_loaded_ms"), "ms", "", None, None, "(info)",
            None, positive=False)
        row("  GET /devices?status=online&limit=100 p50", num(raw, "scale.list.p50_ms"), "ms", "", None, None,
            "(info)", None)
        row("  GET /devices?status=online&limit=100 p99", num(raw, "scale.list.p99_ms"), "ms", "", None, None,
            "(info)", None)
        if "scale.list_rare.p50_ms" in raw:
            # 1 % of the devices offline: no index on status, so this is the listing's costly case.
            row("  GET /devices?status=offline&limit=100 (1 % offline) p50", num(raw, "scale.list_rare.p50_ms"), "ms",
                "", None, None, "(info)", None)
            row("  GET /devices?status=offline&limit=100 (1 % offline) p99", num(raw, "scale.list_rare.p99_ms"), "ms",
                "", None, None, "(info)", None)
    # 8: registration latency
    if "registration.open.p50_ms" in raw:
        o, s = num(raw, "registration.open.p50_ms"), num(raw, "registration.secure.p50_ms")
        row("HTTP registration p50, secure mode vs open", s, "ms", "open mode p50", o, ratio_of(s, o), "(info)",
            None)
        row("  p99 secure / open", num(raw, "registration.secure.p99_ms"), "ms", "open mode p99",
            num(raw, "registration.open.p99_ms"), None, "(info)", None)
    # 9: telemetry ingest (bench/telemetry.sh)
    if "telemetry.mqtt_points_per_s" in raw:
        mqtt_p, passthrough = num(raw, "telemetry.mqtt_points_per_s"), num(raw, "telemetry.passthrough_points_per_s")
        r = ratio_of(mqtt_p, passthrough)
        row("Telemetry over MQTT: points/s stored", mqtt_p, "/s", "broker pass-through", passthrough, r,
            ">= 100,000/s and >= 0.7", None if r is None else (mqtt_p >= 100000 and r >= 0.7))
        http_p, copy = num(raw, "telemetry.http_points_per_s"), num(raw, "telemetry.copy_rows_per_s")
        r = ratio_of(http_p, copy)
        row("Telemetry over HTTP batches: points/s stored", http_p, "/s", "raw COPY", copy, r, ">= 0.3",
            None if r is None else r >= 0.3)
        lag = num(raw, "telemetry.sustained_lag_ms")
        row("  lag until queryable, at a sustained load", lag, "ms", "", None, None, "< 1,000 ms",
            None if lag is None else lag < 1000, positive=False)
        hb_with, hb_alone = num(raw, "telemetry.heartbeats_per_s_with_telemetry"), num(raw, "telemetry.heartbeats_per_s_alone")
        row("  MQTT heartbeats/s while telemetry flows", hb_with, "/s", "heartbeats alone", hb_alone,
            ratio_of(hb_with, hb_alone), "(info)", None)
        ceiling = num(raw, "telemetry.heartbeat_ceiling_per_s_with_telemetry")
        if ceiling is not None:
            # The broker's own heartbeat pass-through to a plain subscriber while the same telemetry flows
            # (same run, fresh broker): the ceiling the service's heartbeats are held to.
            r = ratio_of(hb_with, ceiling)
            row("  MQTT heartbeats/s while telemetry flows, against the broker's ceiling then", hb_with, "/s",
                "broker ceiling with telemetry", ceiling, r, ">= 0.8 (info)", None)
    # 10: commands to devices
    if "commands.round_trip.p50_ms" in raw:
        rate = raw.get("commands.round_trip.offered_per_s")
        p99, per_s = num(raw, "commands.round_trip.p99_ms"), num(raw, "commands.throughput.per_s")
        failed = num(raw, "commands.round_trip.failed")
        row(f"Commands: round trip at {rate}/s, POST -> device -> succeeded, p50", num(raw, "commands.round_trip.p50_ms"),
            "ms", "", None, None, "(info)", None)
        row("  round trip p99", p99, "ms", "", None, None, "< 50 ms", None if p99 is None else p99 < 50)
        row("  of which created -> sent (broker ack stored) p50", num(raw, "commands.stored.to_sent_p50"), "ms", "",
            None, None, "(info)", None, positive=False)
        row("  round trips not succeeded within 10 s", failed, "", "", None, None, "0",
            None if failed is None else failed == 0, positive=False)
        row("  commands/s completed end to end (fan-outs to 1,000 devices)", per_s, "/s", "", None, None, ">= 5,000/s",
            None if per_s is None else per_s >= 5000)
    # Every fleet-manager this run stopped: SIGTERM to exit.
    stops = {k[len("shutdown."):-len(".ms")]: v for k, v in raw.items() if k.startswith("shutdown.") and k.endswith(".ms")}
    if stops:
        slowest = max(stops, key=lambda k: stops[k])
        hung = [k for k in stops if raw.get(f"shutdown.{k}.hung")]
        row(f"Service shutdown, slowest of {len(stops)} (SIGTERM to exit: {slowest})", float(stops[slowest]), "ms",
            "", None, None, "< 20 s, none hung", not hung, positive=False)
        if hung:
            row("  killed after 20 s: " + ", ".join(hung), float(len(hung)), "", "", None, None, "0", False,
                positive=False)
    return rows


def render(raw_path, out_json, smoke=False, plot_data=None):
    raw, errors = load_raw(raw_path)
    rows = build_rows(raw)
    headers = ["measurement", "value", "baseline", "ratio", "target", "met?"]
    table = []
    for r in rows:
        value = fmt(r["value"]) + (" " + r["unit"] if r["unit"] and r["value"] is not None else "")
        base = "" if not r["baseline_name"] else f"{fmt(r['baseline'])} ({r['baseline_name']})"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        table.append([r["measurement"], value, base, ratio, r["target"], met])
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(widths[i]) for i, h in enumerate(headers))
    print(line)
    print("  ".join("-" * w for w in widths))
    for t in table:
        print("  ".join(t[i].ljust(widths[i]) if i in (0, 2, 4) else t[i].rjust(widths[i]) for i in range(len(t))))
    # Smoke checks: sanity, not targets.
    problems = list(errors)
    for r in rows:
        if r["positive"] and r["measurement"] and (r["value"] is None or r["value"] <= 0):
            problems.append(f"no sane number for: {r['measurement'].strip()}")
    if raw.get("presence_single.missed", 0) != 0:
        problems.append(f"presence: {raw['presence_single.missed']} single wills missed")
    if "presence.missed" in raw and raw["presence.missed"] != 0:
        problems.append(f"presence: {raw['presence.missed']} offline documents missed")
    for load in raw.get("loads", []):
        if not raw.get(f"ingest.{load}.persisted"):
            problems.append(f"ingest at offered load {load}: last_seen not persisted (flushed rows did not grow)")
    if plot_data:
        # One line per offered load: x and y of each series. Unthrottled points sit
        # at the rate the publisher actually achieved on that side.
        with open(plot_data, "w") as f:
            f.write("# x_ceiling ceiling_per_s x_ingest ingest_per_s label\n")
            for load in sorted(raw.get("loads", []), key=lambda l: (l == 0, l)):
                xc = load or (num(raw, f"ceiling.{load}.offered_actual") or 0)
                xi = load or (num(raw, f"ingest.{load}.offered_actual") or 0)
                label = "unthrottled" if load == 0 else f"{load // 1000}k"
                f.write(f"{xc:.0f} {num(raw, f'ceiling.{load}.rate') or 0:.0f} {xi:.0f}"
                        f" {num(raw, f'ingest.{load}.rate') or 0:.0f} {label}\n")
    doc = {"meta": raw.get("meta", {}), "rows": rows, "raw": raw, "errors": errors, "problems": problems}
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    missed = [r["measurement"].strip() for r in rows if r["met"] is False]
    print()
    met = sum(1 for r in rows if r["met"] is True)
    print(f"targets: {met} met, {len(missed)} missed" + (": " + "; ".join(missed) if missed else ""))
    if problems:
        print("problems:")
        for p in problems:
            print("  - " + p)
    return 1 if problems else 0


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, args = argv[1], argv[2:]
    if cmd == "rate":
        print(json.dumps(steady_rate(args[0])))
    elif cmd == "presence":
        print(json.dumps(presence(*args[:3])))
    elif cmd == "timeouts":
        print(json.dumps(timeouts(*args[:3])))
    elif cmd == "wrk":
        print(json.dumps(wrk(args[0])))
    elif cmd == "pgbench":
        print(json.dumps(pgbench(args[0])))
    elif cmd == "flush-statement":
        sql = flush_statement(args[0])
        if sql is None:
            return 1
        print(sql)
    elif cmd == "render":
        plot = None
        if "--plot-data" in args:
            plot = args[args.index("--plot-data") + 1]
        status = render(args[0], args[1], smoke="--smoke" in args, plot_data=plot)
        return status
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
