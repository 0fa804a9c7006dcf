#!/usr/bin/env bash
# scripts/bench.sh — the benchmark (owned by the tooling; BENCHMARKS.md shows its
# results). Every measurement runs here, side by side on this machine, against
# fresh private instances started by this script on free loopback ports: one
# Postgres 15 cluster (a fresh database per measurement) and a fresh Mosquitto
# per run, configured from mosquitto/mosquitto.conf. Prints a table on stdout,
# progress on stderr, and writes bench-results/bench-<timestamp>.json (plus the
# ingest plot bench-results/ingest-<timestamp>.png in full mode).
#
#   ./scripts/bench.sh            full mode (~15 minutes on 2 cores)
#   ./scripts/bench.sh --quick    one offered load, small sizes (< 60 s)
#   ./scripts/bench.sh --quick --smoke   what scripts/test.sh runs: exit 1 unless
#                                 every measurement produced a sane number
#   ./scripts/bench.sh --help
#
# shellcheck disable=SC2119,SC2317 # build takes optional CMake arguments; trap handlers
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$MAESTRA_REPO" || exit 1

usage() {
  cat <<'EOF'
Usage: scripts/bench.sh [--quick | --full] [--smoke] [--only LIST] [--loads LIST]
                        [--out DIR] [--keep] [--profile] [--help]

Measures fleet-manager side by side with its baselines, on this machine, against
fresh private Postgres and Mosquitto instances on free 127.0.0.1 ports:

  ceiling,ingest  MQTT heartbeats/s Mosquitto delivers to a plain subscriber
                  (fleet-sim --subscribe) vs. heartbeats/s fleet-manager processes
                  (delta of maestra_heartbeats_total{transport="mqtt"}), same
                  fleet-sim load (2,000 devices, QoS 1, empty payload), per offered
                  load; persistence checked (flushed rows grow, last_seen fresh)
  db              naive one-transaction-per-heartbeat (pgbench, bench/naive_heartbeat.sql)
                  vs. the service's batched flush statement (5,000-row arrays)
  http            wrk, 64 connections: POST /devices/heartbeat vs. GET /health
  presence        1,000 devices with wills killed at once: kill -> offline status p50/p99/max;
                  then devices dying one at a time (bench/single_wills.py): the same, per single will
  timeouts        N silent devices (100,000; quick 10,000) with a short offline_after:
                  each offline within offline_after + 1 s? service CPU time
  scale           N registered devices (1,000,000; quick 100,000): RSS, start-up time,
                  GET /devices?status=online&limit=100 latency
  registration    bench/registration_latency.py, open vs secure mode (full mode only)
  telemetry       bench/telemetry.sh (its own Postgres and brokers; --quick in quick mode):
                  MQTT telemetry points/s stored vs. the broker's pass-through, HTTP batches
                  vs. a raw COPY, the lag until queryable, heartbeats/s alone and with telemetry
  commands        bench/command_round_trip.py: 1,000 devices answering commands (fleet-sim
                  --answer-commands); round trip POST -> device -> succeeded at 100/s p50/p99,
                  and commands/s completed by fan-outs (full mode only)

Options:
  --quick         one offered load (unthrottled), short runs, small sizes: under a minute
  --full          the default: offered loads 5k,10k,20k,40k,60k/s and unthrottled, full sizes,
                  the plot (gnuplot), registration latency; about 15 minutes
  --smoke         sanity only (for scripts/test.sh): exit 1 unless every measurement gave a
                  number > 0, every will was seen and nothing failed. Targets are reported,
                  never checked here.
  --only LIST     comma-separated subset of: ceiling,ingest,db,http,presence,timeouts,scale,registration,
                  telemetry,commands
                  (ceiling and ingest always run together)
  --loads LIST    offered loads in heartbeats/s, 0 = unthrottled (default full: 5000,10000,20000,40000,60000,0)
  --out DIR       results folder (default bench-results/, git-ignored)
  --keep          keep the run's temporary folder (Postgres data, broker configs)
  --profile       also record a perf profile of fleet-manager during the unthrottled ingest run
                  (perf record -e cpu-clock -g; report in the run folder)

Output: the table on stdout; progress lines on stderr; DIR/bench-<timestamp>.json
(meta, rows with ratios and targets, every raw number); logs and raw tool output in
DIR/run-<timestamp>/. Exit status: 0 when every measurement produced its numbers
(targets missed or not), 1 when a measurement failed, 2 on bad options.
Environment: MAESTRA_BUILD_DIR (build/) holds fleet-manager and tools/fleet-sim/fleet-sim.
EOF
}

MODE=full
SMOKE=0
ONLY=""
LOADS_ARG=""
OUT_DIR="$MAESTRA_REPO/bench-results"
KEEP=0
PROFILE=0
while (($#)); do
  case "$1" in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --smoke) SMOKE=1 ;;
    --only) ONLY="${2:-}"; shift ;;
    --only=*) ONLY="${1#*=}" ;;
    --loads) LOADS_ARG="${2:-}"; shift ;;
    --loads=*) LOADS_ARG="${1#*=}" ;;
    --out) OUT_DIR="${2:-}"; shift ;;
    --out=*) OUT_DIR="${1#*=}" ;;
    --keep) KEEP=1 ;;
    --profile) PROFILE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'bench.sh: unknown option %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
  shift
done

# --- sizes per mode ---------------------------------------------------------------------
SIM_DEVICES=2000   # simulated devices for ceiling/ingest/HTTP (each its own connection)
if [[ "$MODE" == quick ]]; then
  LOADS=(0)
  LOAD_SECONDS=4          # fleet-sim --duration (includes its ~0.3-1 s connect phase)
  DB_ROWS=10000
  PGBENCH_SECONDS=3
  WRK_SECONDS=3
  PRESENCE_DEVICES=1000
  SINGLE_WILLS=50
  TIMEOUT_DEVICES=10000
  TIMEOUT_OFFLINE_AFTER=3
  SCALE_DEVICES=100000
  LIST_SECONDS=2
  REGISTRATION=0
else
  LOADS=(5000 10000 20000 40000 60000 0)
  LOAD_SECONDS=12
  DB_ROWS=100000
  PGBENCH_SECONDS=15
  WRK_SECONDS=10
  PRESENCE_DEVICES=1000
  SINGLE_WILLS=50
  TIMEOUT_DEVICES=100000
  TIMEOUT_OFFLINE_AFTER=10
  SCALE_DEVICES=1000000
  LIST_SECONDS=5
  REGISTRATION=1
fi
if [[ -n "$LOADS_ARG" ]]; then
  IFS=',' read -r -a LOADS <<<"$LOADS_ARG"
  for l in "${LOADS[@]}"; do [[ "$l" =~ ^[0-9]+$ ]] || { echo "bench.sh: bad --loads value $l" >&2; exit 2; }; done
fi
ALL_PARTS="ceiling ingest db http presence timeouts scale registration telemetry commands"
if [[ -n "$ONLY" ]]; then
  for p in ${ONLY//,/ }; do
    [[ " $ALL_PARTS " == *" $p "* ]] || { echo "bench.sh: unknown part '$p' in --only" >&2; exit 2; }
  done
fi
wanted() {
  local part="$1"
  [[ "$part" == registration ]] && ((REGISTRATION == 0)) && [[ ",$ONLY," != *",registration,"* ]] && return 1
  [[ "$part" == commands ]] && ((REGISTRATION == 0)) && [[ ",$ONLY," != *",commands,"* ]] && return 1
  [[ -z "$ONLY" ]] && return 0
  [[ "$part" == ingest ]] && [[ ",$ONLY," == *",ceiling,"* ]] && return 0
  [[ "$part" == ceiling ]] && [[ ",$ONLY," == *",ingest,"* ]] && return 0
  [[ ",$ONLY," == *",$part,"* ]]
}

PY=/usr/bin/python3
[[ -x "$PY" ]] || PY="$(command -v python3)"
REPORT=("$PY" "$MAESTRA_REPO/bench/report.py")
SERVICE_BIN="$MAESTRA_BUILD_DIR/fleet-manager"
FLEET_SIM="$MAESTRA_BUILD_DIR/tools/fleet-sim/fleet-sim"
PGBENCH="$PG_BIN/pgbench"
PSQL_BIN="$PG_BIN/psql"

TS="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT_DIR" || exit 1
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
RUN_DIR="$OUT_DIR/run-$TS"
mkdir -p "$RUN_DIR" || exit 1
RAW="$RUN_DIR/raw.jsonl"
: >"$RAW"
# Postgres (which runs as the postgres user when we are root) needs a folder it
# can enter: its data, socket and log live in a temp folder under /tmp (or
# $MAESTRA_PG_TMPDIR, as for the integration tests), never under the clone, which
# may sit in a mode-700 home. The log is copied into the run folder at the end.
TMP="$(mktemp -d "${MAESTRA_PG_TMPDIR:-/tmp}/maestra-bench.XXXXXX")" || exit 1
chmod 755 "$TMP"
PG_LOG="$TMP/pg/postgres.log"
BEGAN=$SECONDS

say() { printf '[bench %3ds] %s\n' "$((SECONDS - BEGAN))" "$*" >&2; }
now_ms() { date +%s%3N; }

# --- raw results ----------------------------------------------------------------------------
# put KEY VALUE: VALUE is JSON (a number, true/false, a quoted string, an object).
put() { printf '{"k":"%s","v":%s}\n' "$1" "${2:-null}" >>"$RAW"; }
put_str() { jq -cn --arg k "$1" --arg v "$2" '{k:$k,v:$v}' >>"$RAW"; }
fail_note() {
  say "FAILED: $*"
  jq -cn --arg v "$*" '{k:"error",v:$v}' >>"$RAW"
}
# put_json PREFIX JSON: every scalar field of the JSON object as PREFIX.field.
put_json() {
  local prefix="$1" json="$2"
  [[ -n "$json" ]] || return 0
  jq -c --arg p "$prefix" 'to_entries[] | select(.value | type != "object" and type != "array")
                           | {k: ($p + "." + .key), v: .value}' <<<"$json" >>"$RAW" 2>/dev/null || true
}
jget() { jq -r "$2 // empty" <<<"$1" 2>/dev/null; }

# --- process bookkeeping and cleanup -------------------------------------------------------------
BG_PIDS=()          # helpers we started (fleet-sim, wrk, pgbench, samplers)
SERVICE_PIDS=()     # fleet-manager instances
BROKER_PIDFILES=()  # mosquitto instances
PG_DATA="$TMP/pg/data"
PG_STARTED=0

track() { BG_PIDS+=("$1"); }
CLEANED=0
cleanup() {
  ((CLEANED)) && return 0
  CLEANED=1
  local pid f
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid" 5 TERM; done
  for pid in "${SERVICE_PIDS[@]}"; do stop_pid "$pid" 15 TERM; done
  for f in "${BROKER_PIDFILES[@]}"; do mosquitto_stop "$f"; done
  ((PG_STARTED)) && pg_stop_cluster "$PG_DATA"
  [[ -f "$PG_LOG" ]] && cp "$PG_LOG" "$RUN_DIR/postgres.log" 2>/dev/null
  if ((KEEP)); then say "kept $TMP"; else rm -rf "$TMP"; fi
}
on_signal() {
  trap - INT TERM
  say "interrupted: cleaning up"
  cleanup
  exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

# bounded_wait SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds or time is up.
bounded_wait() {
  local limit="$1" deadline
  shift
  deadline=$(($(now_ms) + limit * 1000))
  until "$@"; do
    (($(now_ms) < deadline)) || return 1
    sleep 0.1
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# pg_cpu_ticks: CPU ticks of the whole Postgres cluster: the postmaster, its live
# children, and the children that have exited (cutime/cstime).
pg_cpu_ticks() {
  local pm total=0 p
  pm="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null)"
  [[ -n "$pm" ]] || { echo 0; return; }
  total="$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat" 2>/dev/null || echo 0)"
  for p in $(ps -o pid= --ppid "$pm" 2>/dev/null); do total=$((total + $(cpu_ticks "$p"))); done
  echo "$total"
}
CLK_TCK="$(getconf CLK_TCK)"
rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null; }

# --- prerequisites -------------------------------------------------------------------------------
check_tools() {
  local missing=() t
  for t in curl jq wrk mosquitto gnuplot; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  [[ -x "$PGBENCH" ]] || missing+=("$PGBENCH")
  if ((${#missing[@]})); then
    say "missing: ${missing[*]}; installing the project's Debian packages"
    install_dependencies || die "cannot install ${missing[*]}"
  fi
  if [[ ! -x "$SERVICE_BIN" || ! -x "$FLEET_SIM" ]]; then
    say "building (fleet-manager or fleet-sim missing in $MAESTRA_BUILD_DIR)"
    if [[ -f "$MAESTRA_BUILD_DIR/CMakeCache.txt" ]]; then
      cmake --build "$MAESTRA_BUILD_DIR" -j "$(nproc)" >&2 || die "build failed"
    else
      build >&2 || die "build failed"
    fi
  fi
}

# --- Postgres ------------------------------------------------------------------------------------
PG_PORT=""
start_postgres() {
  PG_PORT="$(first_free_port 25432)"
  mkdir -p "$TMP/pg"
  pg_own "$TMP/pg"
  pg_init_cluster "$PG_DATA" >"$TMP/initdb.log" 2>&1 || { tail -n 20 "$TMP/initdb.log" >&2; return 1; }
  # Postgres' defaults for durability (fsync, synchronous_commit, full_page_writes
  # all on): what a deployment runs. The naive pgbench side runs on the same cluster.
  pg_start_cluster "$PG_DATA" "$PG_PORT" "$TMP/pg/sock" "$PG_LOG" \
    "-c max_connections=200 -c shared_buffers=256MB" || return 1
  PG_STARTED=1
}
psql_db() { "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" "${@:2}"; }
db_value() { psql_db "$1" -tAc "$2"; }
db_url() { echo "postgresql://postgres@127.0.0.1:$PG_PORT/$1"; }
new_database() {
  psql_db postgres -c "DROP DATABASE IF EXISTS \"$1\"" >/dev/null 2>&1
  psql_db postgres -c "CREATE DATABASE \"$1\"" >/dev/null
}

# --- Mosquitto ------------------------------------------------------------------------------------
BROKER_PORT=""
BROKER_PID=""
BROKER_PIDFILE=""
start_broker() {
  local name="$1" dir="$TMP/mq-$1" ws
  mkdir -p "$dir/data"
  BROKER_PORT="$(first_free_port 21883)"
  ws="$(first_free_port $((BROKER_PORT + 1)))"
  mosquitto_render_conf "$MAESTRA_REPO/mosquitto/mosquitto.conf" "$dir/mosquitto.conf" "$BROKER_PORT" "$ws" \
    "$dir/data/" "$RUN_DIR/mosquitto-$name.log"
  BROKER_PIDFILE="$dir/mosquitto.pid"
  BROKER_PIDFILES+=("$BROKER_PIDFILE")
  mosquitto_start "$dir/mosquitto.conf" "$BROKER_PORT" "$RUN_DIR/mosquitto-$name.log" "$BROKER_PIDFILE" || return 1
  BROKER_PID="$MAESTRA_MOSQUITTO_PID"
}
stop_broker() { [[ -n "$BROKER_PIDFILE" ]] && mosquitto_stop "$BROKER_PIDFILE"; BROKER_PIDFILE=""; }

# --- fleet-manager ------------------------------------------------------------------------------------
SERVICE_PID=""
SERVICE_URL=""
SERVICE_LOG=""
SERVICE_STARTED_MS=0
SERVICE_READY_MS=0
# start_service NAME DATABASE [VAR=VALUE...]: start against the current broker,
# wait (bounded) until /health says ok.
start_service() {
  local name="$1" db="$2" port
  shift 2
  port="$(first_free_port 28080)"
  SERVICE_NAME="$name"
  SERVICE_LOG="$RUN_DIR/service-$name.log"
  SERVICE_URL="http://127.0.0.1:$port"
  SERVICE_STARTED_MS="$(now_ms)"
  env MAESTRA_HTTP_HOST=127.0.0.1 MAESTRA_HTTP_PORT="$port" MAESTRA_DATABASE_URL="$(db_url "$db")" \
    MAESTRA_MQTT_URL="tcp://127.0.0.1:$BROKER_PORT" MAESTRA_MQTT_CLIENT_ID="fleet-manager-bench-$name" \
    "$@" "$SERVICE_BIN" >>"$SERVICE_LOG" 2>&1 </dev/null &
  SERVICE_PID=$!
  SERVICE_PIDS+=("$SERVICE_PID")
  if ! bounded_wait "${SERVICE_WAIT:-60}" service_healthy; then
    tail -n 20 "$SERVICE_LOG" >&2
    fail_note "fleet-manager ($name) did not become healthy"
    stop_service
    return 1
  fi
  SERVICE_READY_MS="$(now_ms)"
}
service_healthy() {
  kill -0 "$SERVICE_PID" 2>/dev/null || return 2
  curl -fsS --max-time 1 "$SERVICE_URL/health" 2>/dev/null | grep -q '"status":"ok"'
}
# stop_service: SIGTERM, up to 20 s for a clean exit, then SIGKILL. Records how
# long it took and the exit status (0 clean, 139 a crash, 137 killed here).
SERVICE_NAME=""
stop_service() {
  [[ -n "$SERVICE_PID" ]] || return 0
  local t0 status killed=false
  t0="$(now_ms)"
  kill -TERM "$SERVICE_PID" 2>/dev/null
  bounded_wait 20 service_exited || { killed=true; kill -KILL "$SERVICE_PID" 2>/dev/null; }
  wait "$SERVICE_PID" 2>/dev/null
  status=$?
  put "shutdown.$SERVICE_NAME.ms" $(($(now_ms) - t0))
  put "shutdown.$SERVICE_NAME.status" "$status"
  if [[ "$killed" == true ]]; then
    put "shutdown.$SERVICE_NAME.hung" true
    say "fleet-manager ($SERVICE_NAME) did not exit within 20 s of SIGTERM: killed"
  elif ((status != 0)); then
    fail_note "fleet-manager ($SERVICE_NAME) exited with status $status on SIGTERM$( ((status == 139)) && echo ' (segmentation fault)')"
  fi
  SERVICE_PID=""
}
service_exited() { ! kill -0 "$SERVICE_PID" 2>/dev/null || [[ "$(ps -o stat= -p "$SERVICE_PID" 2>/dev/null)" == Z* ]]; }
metric() { curl -fsS --max-time 2 "$SERVICE_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# migrated_database NAME: a fresh database with the service's schema (the
# service migrates it at start; it is stopped again at once).
migrated_database() {
  local name="$1"
  new_database "$name" || return 1
  start_broker "migrate-$name" || return 1
  start_service "migrate-$name" "$name" || { stop_broker; return 1; }
  stop_service
  stop_broker
}

# insert_devices DB COUNT STATUS LAST_SEEN_SQL ID_SQL: registered devices by SQL,
# already published (status_seq = published_seq), so a service start publishes nothing.
insert_devices() {
  local db="$1" count="$2" status="$3" last_seen="$4" id_sql="$5" connected=true
  [[ "$status" == offline ]] && connected=false
  psql_db "$db" -c "INSERT INTO devices (id, name, device_type, hardware_id, status, connected, last_seen,
      status_changed_at, status_reason, status_seq, published_seq, created_at, updated_at)
    SELECT $id_sql, 'bench-' || g, 'bench', 'bench-' || g, '$status', $connected, $last_seen,
      now() - interval '1 hour', 'registered', 1, 1, now() - interval '1 hour' + g * interval '1 microsecond', now()
    FROM generate_series(1, $count) AS g" >/dev/null &&
    psql_db "$db" -c "VACUUM ANALYZE devices" >/dev/null
}

# --- the metrics sampler ---------------------------------------------------------------------------
# sample_metrics URL FILE MAX_SECONDS: every 0.2 s, one line
# `epoch_ms heartbeats_mqtt flushed_rows flush_seconds flushes`.
sample_metrics() {
  local url="$1" file="$2" max_iter=$(($3 * 5)) i=0 t body
  while ((i++ < max_iter)); do
    t="$(now_ms)"
    body="$(curl -fsS --max-time 1 "$url/metrics" 2>/dev/null)" || { sleep 0.2; continue; }
    awk -v t="$t" '
      $1 == "maestra_heartbeats_total{transport=\"mqtt\"}" {h = $2}
      $1 == "maestra_last_seen_flushed_rows_total" {r = $2}
      $1 == "maestra_last_seen_flush_seconds_total" {s = $2}
      $1 == "maestra_last_seen_flushes_total" {f = $2}
      END {printf "%s %s %s %s %s\n", t, h + 0, r + 0, s + 0, f + 0}' <<<"$body" >>"$file"
    sleep 0.2
  done
}
# counter_settled FILE TARGET: the heartbeat count reached TARGET (every
# heartbeat the broker acknowledged), or has not moved for 5 s (25 samples).
counter_settled() {
  local last
  last="$(tail -n 1 "$1" 2>/dev/null | awk '{printf "%d", $2}')"
  [[ -n "$last" ]] && (($(wc -l <"$1") >= 2)) && ((last >= ${2:-0})) && return 0
  (($(wc -l <"$1") >= 25)) && [[ "$(tail -n 25 "$1" | awk '{print $2}' | sort -u | wc -l)" == 1 ]]
}

# --- machine and versions --------------------------------------------------------------------------
record_meta() {
  local cpu mem pgv mqv kernel commit dirty
  cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  mem="$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  pgv="$("$PG_BIN/postgres" --version | awk '{print $3}')"
  mqv="$(mosquitto -h 2>/dev/null | awk '/^mosquitto version/ {print $3; exit}')"
  kernel="$(uname -r)"
  commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  dirty="$(git status --porcelain -- src 2>/dev/null | wc -l)"
  jq -cn --arg mode "$MODE" --arg ts "$TS" --arg cpu "$cpu" --arg mem "$mem" --arg nproc "$(nproc)" \
    --arg pg "$pgv" --arg mq "$mqv" --arg kernel "$kernel" --arg commit "$commit" --arg dirty "$dirty" \
    --arg wrk "$(wrk -v 2>&1 | head -n 1 | awk '{print $2}')" --arg loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --arg binary_mtime "$(date -u -r "$SERVICE_BIN" +%Y-%m-%dT%H:%M:%SZ)" \
    '{k:"meta", v:{mode:$mode, timestamp:$ts, cpu:$cpu, nproc:($nproc|tonumber), memory:$mem, kernel:$kernel,
      postgres:$pg, mosquitto:$mq, wrk:$wrk, commit:$commit, src_files_changed:($dirty|tonumber),
      fleet_manager_built:$binary_mtime, loadavg_at_start:$loadavg}}' >>"$RAW"
}

# =====================================================================================================
# 1 + 2. Broker ceiling and service ingest, per offered load
# =====================================================================================================
IDS_FILE="$RUN_DIR/ids.txt"
INGEST_DB=ingest

register_fleet() {
  say "registering $SIM_DEVICES devices over HTTP (database $INGEST_DB)"
  new_database "$INGEST_DB" || return 1
  start_broker register || return 1
  start_service register "$INGEST_DB" || { stop_broker; return 1; }
  "$FLEET_SIM" --port "$BROKER_PORT" --http "$SERVICE_URL" --devices "$SIM_DEVICES" --register http \
    --run-id "bench-$TS" --write-ids "$IDS_FILE" --interval-ms 600000 --duration 0.5 --connect-rate 10000 \
    --on-exit disconnect --quiet >"$RUN_DIR/register.out" 2>"$RUN_DIR/register.err"
  local status=$?
  stop_service
  stop_broker
  if ((status != 0)) || [[ "$(wc -l <"$IDS_FILE" 2>/dev/null)" != "$SIM_DEVICES" ]]; then
    fail_note "registration of $SIM_DEVICES devices failed: $(tail -n 2 "$RUN_DIR/register.err" | tr '\n' ' ')"
    return 1
  fi
}

# publisher LOAD OUT [extra fleet-sim args]: the same load for both sides.
publisher() {
  local load="$1" out="$2"
  shift 2
  "$FLEET_SIM" --port "$BROKER_PORT" --devices "$SIM_DEVICES" --qos 1 --rate "$load" --duration "$LOAD_SECONDS" \
    --connect-rate 10000 --on-exit disconnect --quiet "$@" >"$out" 2>"$out.err"
}

run_ceiling() {
  local load="$1"
  local dir="$RUN_DIR/ceiling-$load" sub_pid status summary sub_summary acked received b0 b1
  mkdir -p "$dir"
  start_broker "ceiling-$load" || { fail_note "broker for ceiling $load"; return 1; }
  "$FLEET_SIM" --subscribe "maestra/devices/+/heartbeat" --qos 1 --port "$BROKER_PORT" \
    --duration $((LOAD_SECONDS + 30)) >"$dir/subscriber.out" 2>"$dir/subscriber.err" &
  sub_pid=$!
  track "$sub_pid"
  bounded_wait 5 grep -q "elapsed=" "$dir/subscriber.out" || sleep 0.5
  b0="$(cpu_ticks "$BROKER_PID")"
  publisher "$load" "$dir/publisher.out" --register none --run-id "ceiling-$TS"
  status=$?
  summary="$(grep '^{' "$dir/publisher.out" | tail -n 1)"
  acked="$(jget "$summary" .acked)"
  # Let the subscriber receive everything the broker acknowledged (bounded).
  sub_received() { [[ "$(tail -n 1 "$dir/subscriber.out" | sed -n 's/.* received=\([0-9]*\).*/\1/p')" -ge "${acked:-0}" ]]; }
  bounded_wait 10 sub_received || true
  sleep 0.3
  b1="$(cpu_ticks "$BROKER_PID")"
  stop_pid "$sub_pid" 5 TERM
  sub_summary="$(grep '^{' "$dir/subscriber.out" | tail -n 1)"
  stop_broker
  received="$(jget "$sub_summary" .received)"
  put "ceiling.$load.rate" "$(jget "$sub_summary" .active_rate)"
  put "ceiling.$load.received" "${received:-null}"
  put "ceiling.$load.offered_actual" "$(jget "$summary" .rate_acked)"
  put "ceiling.$load.publisher_sent" "${acked:-null}"
  put "ceiling.$load.broker_cpu_s" "$(awk -v a="$b0" -v b="$b1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  if ((status != 0)) || [[ -z "$received" ]]; then
    fail_note "ceiling at load $load: publisher exit $status, subscriber summary '${sub_summary:0:80}'"
    return 1
  fi
  if ((received < acked)); then
    fail_note "ceiling at load $load: subscriber got $received of $acked heartbeats"
  fi
  say "ceiling @ ${load:-0}/s offered: broker delivered $(printf '%.0f' "$(jget "$sub_summary" .active_rate)")/s to a plain subscriber"
}

run_ingest() {
  local load="$1"
  local dir="$RUN_DIR/ingest-$load" sampler status summary rate_json b0 b1 s0 s1 sent lag perf_pid=""
  mkdir -p "$dir"
  start_broker "ingest-$load" || { fail_note "broker for ingest $load"; return 1; }
  start_service "ingest-$load" "$INGEST_DB" || { stop_broker; return 1; }
  sample_metrics "$SERVICE_URL" "$dir/samples.txt" $((LOAD_SECONDS + 60)) &
  sampler=$!
  track "$sampler"
  sleep 0.5
  b0="$(cpu_ticks "$BROKER_PID")"
  s0="$(cpu_ticks "$SERVICE_PID")"
  if ((PROFILE)) && ((load == 0)) && command -v perf >/dev/null 2>&1; then
    perf record -e cpu-clock -F 499 -g -p "$SERVICE_PID" -o "$dir/perf.data" -- sleep "$LOAD_SECONDS" \
      >"$dir/perf.log" 2>&1 &
    perf_pid=$!
    track "$perf_pid"
  fi
  publisher "$load" "$dir/publisher.out" --ids-file "$IDS_FILE"
  status=$?
  summary="$(grep '^{' "$dir/publisher.out" | tail -n 1)"
  # The service may still drain what the broker queued for it: wait until the
  # counter has not moved for a second (bounded), then one flush interval more.
  local target
  target="$(jget "$summary" .acked)"
  bounded_wait 60 counter_settled "$dir/samples.txt" "$(( ${target:-0} + $(head -n 1 "$dir/samples.txt" | awk '{printf "%d", $2}') ))" ||
    fail_note "ingest at load $load: counter still moving after 60 s"
  sleep 1.2
  b1="$(cpu_ticks "$BROKER_PID")"
  s1="$(cpu_ticks "$SERVICE_PID")"
  stop_pid "$sampler" 3 TERM
  [[ -n "$perf_pid" ]] && wait "$perf_pid" 2>/dev/null
  rate_json="$("${REPORT[@]}" rate "$dir/samples.txt")"
  put_json "ingest.$load" "$rate_json"
  sent="$(jget "$summary" .acked)"
  put "ingest.$load.publisher_sent" "${sent:-null}"
  put "ingest.$load.offered_actual" "$(jget "$summary" .rate_acked)"
  put "ingest.$load.broker_cpu_s" "$(awk -v a="$b0" -v b="$b1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  put "ingest.$load.service_cpu_s" "$(awk -v a="$s0" -v b="$s1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  # Persistence: flushed rows grew, and every device's last_seen in Postgres is
  # within a second of the service's last processed heartbeat.
  local rows last_ms min_seen
  rows="$(jget "$rate_json" .flushed_rows)"
  last_ms="$(jget "$rate_json" .last_progress_ms)"
  min_seen="$(db_value "$INGEST_DB" "SELECT (extract(epoch from min(last_seen)) * 1000)::bigint FROM devices")"
  if [[ -n "$last_ms" && -n "$min_seen" ]]; then
    lag=$((${last_ms%.*} - min_seen))
    put "ingest.$load.persist_lag_ms" "$lag"
  fi
  if [[ -n "$rows" ]] && awk -v r="$rows" 'BEGIN {exit !(r > 0)}'; then put "ingest.$load.persisted" true
  else put "ingest.$load.persisted" false; fi
  local processed
  processed="$(jget "$rate_json" .heartbeats)"
  if grep -q "Outgoing messages are being dropped" "$RUN_DIR/mosquitto-ingest-$load.log" 2>/dev/null; then
    put "ingest.$load.broker_dropped" true
  fi
  put "ingest.$load.errors_in_log" "$(grep -c ' error ' "$SERVICE_LOG" 2>/dev/null)"
  stop_service
  stop_broker
  if [[ -n "$perf_pid" && -s "$dir/perf.data" ]]; then
    perf report -i "$dir/perf.data" --stdio --no-children --percent-limit 1 >"$dir/perf-report.txt" 2>/dev/null
    perf report -i "$dir/perf.data" --stdio --no-children --sort dso --percent-limit 1 >"$dir/perf-dso.txt" 2>/dev/null
    say "perf profile: $dir/perf-report.txt"
  fi
  if ((status != 0)) || [[ -z "$(jget "$rate_json" .rate)" ]]; then
    fail_note "ingest at load $load: publisher exit $status, no rate ($rate_json)"
    return 1
  fi
  if [[ -n "$sent" && -n "$processed" ]]; then
    put "ingest.$load.lost" "$(awk -v p="$processed" -v s="$sent" 'BEGIN {printf "%d", (s > p ? s - p : 0)}')"
  fi
  say "ingest  @ ${load}/s offered: fleet-manager processed $(printf '%.0f' "$(jget "$rate_json" .rate)")/s" \
    "(last_seen lag ${lag:-?} ms, service CPU $(awk -v a="$s0" -v b="$s1" -v t="$CLK_TCK" 'BEGIN {printf "%.1f", (b - a) / t}') s)"
}

bench_ingest() {
  put loads "[$(IFS=,; echo "${LOADS[*]}")]"
  put ran.ingest true
  local load svc_rows=0 svc_secs=0
  for load in "${LOADS[@]}"; do
    run_ceiling "$load"
    run_ingest "$load"
  done
  # The service's own flushes over all runs: rows per second of flush time.
  local r s
  for load in "${LOADS[@]}"; do
    r="$(jq -r "select(.k == \"ingest.$load.flushed_rows\") | .v" "$RAW" | tail -n 1)"
    s="$(jq -r "select(.k == \"ingest.$load.flush_seconds\") | .v" "$RAW" | tail -n 1)"
    [[ -n "$r" && -n "$s" ]] || continue
    svc_rows="$(awk -v a="$svc_rows" -v b="$r" 'BEGIN {print a + b}')"
    svc_secs="$(awk -v a="$svc_secs" -v b="$s" 'BEGIN {print a + b}')"
  done
  if awk -v s="$svc_secs" 'BEGIN {exit !(s > 0)}'; then
    put ingest.flush_rows_per_s "$(awk -v r="$svc_rows" -v s="$svc_secs" 'BEGIN {printf "%.0f", r / s}')"
  fi
}

# =====================================================================================================
# 3. Database: naive transaction per heartbeat vs. the batched flush statement
# =====================================================================================================
bench_db() {
  local db=dbbench dir="$RUN_DIR/db" batch=5000 nbatches flush_sql json
  put ran.db true
  mkdir -p "$dir"
  say "database: schema by fleet-manager, $DB_ROWS devices, pgbench ${PGBENCH_SECONDS}s per side"
  migrated_database "$db" || { fail_note "database benchmark: migration"; return 1; }
  insert_devices "$db" "$DB_ROWS" online "now()" "md5('bench-' || g)::uuid" ||
    { fail_note "database benchmark: insert"; return 1; }
  nbatches=$(((DB_ROWS + batch - 1) / batch))
  psql_db "$db" -c "CREATE TABLE bench_batches AS
      SELECT (g - 1) / $batch + 1 AS b, array_agg(md5('bench-' || g)::uuid ORDER BY g) AS ids
      FROM generate_series(1, $DB_ROWS) AS g GROUP BY 1" >/dev/null || { fail_note "database: batches"; return 1; }
  psql_db "$db" -tAc "SELECT name || '=' || setting FROM pg_settings
      WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers')
      ORDER BY name" >"$dir/settings.txt"
  put_str db.settings "$(paste -sd' ' "$dir/settings.txt")"
  put db.rows "$DB_ROWS"
  # Naive: 8 clients, as many as the service's request pool (MAESTRA_DATABASE_POOL).
  "$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared -c 8 -j 2 -T "$PGBENCH_SECONDS" \
    -D ndev="$DB_ROWS" -f "$MAESTRA_REPO/bench/naive_heartbeat.sql" "$db" >"$dir/naive.txt" 2>&1 ||
    fail_note "pgbench naive: $(tail -n 2 "$dir/naive.txt" | tr '\n' ' ')"
  json="$("${REPORT[@]}" pgbench "$dir/naive.txt")"
  put_json db.naive "$json"
  say "database: naive one transaction per heartbeat: $(jget "$json" .tps) tps (8 clients)"
  # The same with synchronous_commit=off for this client only: the naive
  # pattern's best case when it gives up durability (for context, not the target).
  if [[ "$MODE" == full ]]; then
    PGOPTIONS="-c synchronous_commit=off" "$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared -c 8 -j 2 \
      -T "$PGBENCH_SECONDS" -D ndev="$DB_ROWS" -f "$MAESTRA_REPO/bench/naive_heartbeat.sql" "$db" \
      >"$dir/naive-async.txt" 2>&1 || fail_note "pgbench naive async: $(tail -n 2 "$dir/naive-async.txt" | tr '\n' ' ')"
    json="$("${REPORT[@]}" pgbench "$dir/naive-async.txt")"
    put_json db.naive_async "$json"
    say "database: naive with synchronous_commit=off: $(jget "$json" .tps) tps"
  fi
  # Batched: the service's own statement, 5,000-row arrays, one client (the
  # service has one flusher thread).
  # report.py binds its $1..$6 to the variables bench/flush_prologue.sql sets.
  if flush_sql="$("${REPORT[@]}" flush-statement "$MAESTRA_REPO/src/store/sql/flush_last_seen.sql")"; then
    { cat "$MAESTRA_REPO/bench/flush_prologue.sql"; printf '%s\n' "$flush_sql"; } >"$dir/flush.sql"
    "$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared -c 1 -T "$PGBENCH_SECONDS" -r \
      -D nbatches="$nbatches" -f "$dir/flush.sql" "$db" >"$dir/batched.txt" 2>&1 ||
      fail_note "pgbench batched: $(tail -n 2 "$dir/batched.txt" | tr '\n' ' ')"
    json="$("${REPORT[@]}" pgbench "$dir/batched.txt")"
    put_json db.batched "$json"
    local tps stmt_ms
    tps="$(jget "$json" .tps)"
    stmt_ms="$(jq -r '.statements | map(select(.sql | test("WITH u AS"))) | .[0].ms // empty' <<<"$json")"
    if [[ -n "$tps" ]]; then
      put db.batched.rows_per_s "$(awk -v t="$tps" -v b="$batch" 'BEGIN {printf "%.0f", t * b}')"
      [[ -n "$stmt_ms" ]] && put db.batched.statement_rows_per_s \
        "$(awk -v m="$stmt_ms" -v b="$batch" 'BEGIN {printf "%.0f", b / m * 1000}')"
      put db.batched.batch_rows "$batch"
      say "database: batched flush, $batch-row arrays: $(awk -v t="$tps" -v b="$batch" 'BEGIN {printf "%.0f", t * b}') rows/s"
    fi
    local updated
    updated="$(db_value "$db" "SELECT count(*) FROM devices WHERE last_seen > now() - interval '$((PGBENCH_SECONDS * 3 + 60)) seconds'")"
    put db.batched.rows_fresh "${updated:-0}"
  else
    fail_note "database: could not read the flush_last_seen statement from src/store/sql/flush_last_seen.sql" \
      "(its parameters are not the six bench/flush_prologue.sql binds)"
  fi
  psql_db postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
}

# =====================================================================================================
# 4. HTTP: wrk, 64 connections, heartbeat vs. /health
# =====================================================================================================
bench_http() {
  local dir="$RUN_DIR/http" json
  put ran.http true
  mkdir -p "$dir"
  [[ -s "$IDS_FILE" ]] || register_fleet || return 1
  start_broker http || return 1
  start_service http "$INGEST_DB" || { stop_broker; return 1; }
  say "http: wrk -t2 -c64 -d${WRK_SECONDS}s GET /health, then POST /devices/heartbeat"
  wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency "$SERVICE_URL/health" >"$dir/health.txt" 2>&1 ||
    fail_note "wrk /health failed"
  json="$("${REPORT[@]}" wrk "$dir/health.txt")"
  put_json http.health "$json"
  # While wrk holds its 64 keep-alive connections, a 65th client opens a fresh
  # connection every 0.25 s and times GET /health: wrk's own percentiles only
  # cover requests that were answered, so a connection starved for a worker
  # thread would not show in them.
  wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency -s "$MAESTRA_REPO/bench/wrk_heartbeat.lua" "$SERVICE_URL" \
    -- "$IDS_FILE" >"$dir/heartbeat.txt" 2>&1 &
  local wrk_pid=$! i probe_pids=()
  track "$wrk_pid"
  sleep 0.5
  for ((i = 0; i < (WRK_SECONDS - 1) * 4; i++)); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time $((WRK_SECONDS + 5)) "$SERVICE_URL/health" \
      >"$dir/probe-$i.txt" 2>/dev/null &
    probe_pids+=($!)
    track "${probe_pids[-1]}"
    sleep 0.25
  done
  wait "$wrk_pid" || fail_note "wrk heartbeat failed"
  for i in "${probe_pids[@]}"; do wait "$i" 2>/dev/null; done
  cat "$dir"/probe-*.txt >"$dir/probes.txt" 2>/dev/null
  rm -f "$dir"/probe-*.txt
  local hb probe
  hb="$("${REPORT[@]}" wrk "$dir/heartbeat.txt")"
  put_json http.heartbeat "$hb"
  probe="$(awk '$1 == 200 {print $2 * 1000}' "$dir/probes.txt" | sort -n |
    awk '{t[NR] = $1; if ($1 > 1000) slow++}
      END {if (!NR) {print "{}"; exit}
           printf "{\"count\":%d,\"p50_ms\":%.2f,\"max_ms\":%.2f,\"over_1s\":%d}\n", NR, t[int((NR + 1) / 2)], t[NR], slow + 0}')"
  put_json http.probe "$probe"
  put http.heartbeat.metric_http "$(metric 'maestra_heartbeats_total{transport="http"}')"
  stop_service
  stop_broker
  for j in "$json" "$hb"; do
    if [[ "$(jget "$j" .non_2xx)" != 0 || "$(jget "$j" .socket_errors)" != 0 ]]; then
      fail_note "http: non-2xx or socket errors: $j"
    fi
  done
  say "http: /health $(jget "$json" .rps) req/s p99 $(jget "$json" .p99_ms) ms;" \
    "heartbeat $(jget "$hb" .rps) req/s p50 $(jget "$hb" .p50_ms) ms p99 $(jget "$hb" .p99_ms) ms;" \
    "a 65th client waited p50 $(jget "$probe" .p50_ms) ms, max $(jget "$probe" .max_ms) ms"
}

# =====================================================================================================
# 5. Presence latency: kill devices with wills, time to the offline status
# =====================================================================================================
bench_presence() {
  local dir="$RUN_DIR/presence" sub_pid json status n="$PRESENCE_DEVICES"
  put ran.presence true
  mkdir -p "$dir"
  [[ -s "$IDS_FILE" ]] || register_fleet || return 1
  ((n <= $(wc -l <"$IDS_FILE"))) || n="$(wc -l <"$IDS_FILE")"
  start_broker presence || return 1
  start_service presence "$INGEST_DB" || { stop_broker; return 1; }
  "$FLEET_SIM" --subscribe "maestra/devices/+/status" --qos 1 --skip-retained --print-arrivals \
    --port "$BROKER_PORT" --duration 60 >"$dir/arrivals.txt" 2>"$dir/subscriber.err" &
  sub_pid=$!
  track "$sub_pid"
  sleep 0.5
  say "presence: $n devices connect with wills, all killed 1 s later"
  "$FLEET_SIM" --port "$BROKER_PORT" --ids-file "$IDS_FILE" --devices "$n" --interval-ms 30000 \
    --duration 4 --kill-fraction 1 --kill-after 1 --killed-file "$dir/killed.txt" --connect-rate 10000 \
    --quiet >"$dir/fleet.out" 2>"$dir/fleet.err"
  status=$?
  # Wait (bounded) until every killed device's offline document has arrived.
  all_offline() {
    [[ -s "$dir/killed.txt" ]] || return 1
    "${REPORT[@]}" presence "$dir/fleet.out" "$dir/killed.txt" "$dir/arrivals.txt" 2>/dev/null |
      jq -e '.missed == 0' >/dev/null
  }
  bounded_wait 10 all_offline || true
  stop_pid "$sub_pid" 5 TERM
  json="$("${REPORT[@]}" presence "$dir/fleet.out" "$dir/killed.txt" "$dir/arrivals.txt")"
  put_json presence "$json"
  put presence.will_transitions "$(metric 'maestra_status_transitions_total{reason="will"}')"
  stop_service
  stop_broker
  if ((status != 0)) || [[ -z "$(jget "$json" .p50_ms)" ]]; then
    fail_note "presence: fleet-sim exit $status; $json"
    return 1
  fi
  say "presence: $(jget "$json" .seen)/$(jget "$json" .killed) offline; p50 $(jget "$json" .p50_ms) ms," \
    "p99 $(jget "$json" .p99_ms) ms, max $(jget "$json" .max_ms) ms"
  # Single wills (each alone, 150 ms apart): bench/single_wills.py, its own instances.
  say "presence: $SINGLE_WILLS devices die one at a time (bench/single_wills.py)"
  if FLEET_MANAGER_BIN="$SERVICE_BIN" timeout 180 "$PY" "$MAESTRA_REPO/bench/single_wills.py" --count "$SINGLE_WILLS" \
    >"$dir/single.json" 2>"$dir/single.err"; then
    json="$(grep '^{' "$dir/single.json" | tail -n 1)"
    put_json presence_single "$json"
    say "presence: single wills p50 $(jget "$json" .p50_ms) ms, p99 $(jget "$json" .p99_ms) ms," \
      "max $(jget "$json" .max_ms) ms, $(jget "$json" .missed) missed"
  else
    fail_note "single_wills.py failed: $(tail -n 3 "$dir/single.err" | tr '\n' ' ')"
    return 1
  fi
}

# =====================================================================================================
# 6. Timeouts: silent devices come due together
# =====================================================================================================
bench_timeouts() {
  local db=timeouts dir="$RUN_DIR/timeouts" n="$TIMEOUT_DEVICES" after="$TIMEOUT_OFFLINE_AFTER" sub_pid
  put ran.timeouts true
  mkdir -p "$dir"
  say "timeouts: $n silent devices, offline_after ${after}s"
  # The service migrates the database on the broker of the measurement, with the
  # same client id, so that broker holds the service's session when the measured
  # start connects: that start republishes only its outbox (empty here), not all
  # n statuses (what it does for a broker without its session), and the storm is
  # measured alone.
  new_database "$db" || { fail_note "timeouts: database"; return 1; }
  start_broker timeouts || return 1
  start_service timeouts-migrate "$db" MAESTRA_MQTT_CLIENT_ID=fleet-manager-bench-timeouts ||
    { stop_broker; fail_note "timeouts: migration"; return 1; }
  stop_service
  insert_devices "$db" "$n" online "now() - interval '1 hour'" "gen_random_uuid()" ||
    { stop_broker; fail_note "timeouts: insert"; return 1; }
  "$FLEET_SIM" --subscribe "maestra/devices/+/status" --qos 1 --skip-retained --print-arrivals \
    --port "$BROKER_PORT" --duration $((after + 60)) >"$dir/arrivals.txt" 2>"$dir/subscriber.err" &
  sub_pid=$!
  track "$sub_pid"
  sleep 0.3
  start_service timeouts "$db" MAESTRA_OFFLINE_AFTER="$after" || { stop_broker; return 1; }
  # Every device's deadline is max(last_seen, start) + offline_after = start +
  # offline_after, where start is the instant the registry load began.
  local loaded_line loaded_ms load_ms started_ms deadline_ms c0 c1 p0 p1 b0 b1 offline
  loaded_line="$(grep -m1 'registry_loaded' "$SERVICE_LOG")"
  load_ms="$(sed -n 's/.* ms=\([0-9]*\).*/\1/p' <<<"$loaded_line")"
  loaded_ms="$(date -d "$(awk '{print $1}' <<<"$loaded_line")" +%s%3N)"
  started_ms=$((loaded_ms - load_ms))
  deadline_ms=$((started_ms + after * 1000))
  c0="$(cpu_ticks "$SERVICE_PID")" p0="$(pg_cpu_ticks)" b0="$(cpu_ticks "$BROKER_PID")"
  if (($(now_ms) > deadline_ms - 200)); then
    say "timeouts: warning: the service became healthy only $(( $(now_ms) - deadline_ms )) ms before/after the deadline"
  fi
  # Polled every 0.1 s during the storm: the arrivals first (a grep), Postgres
  # only once they are all in, so the poll takes little of the CPU it measures.
  all_offline() {
    # wc first: a line count is far cheaper than a grep of the growing file, and
    # takes less of the CPU being measured.
    (($(wc -l <"$dir/arrivals.txt") >= n)) &&
      [[ "$(grep -c '"status":"offline"' "$dir/arrivals.txt")" -ge "$n" ]] &&
      [[ "$(db_value "$db" "SELECT count(*) FROM devices WHERE status = 'offline'")" == "$n" ]]
  }
  bounded_wait $((after + 30)) all_offline || fail_note "timeouts: not every device offline within $((after + 30)) s"
  sleep 0.5
  c1="$(cpu_ticks "$SERVICE_PID")" p1="$(pg_cpu_ticks)" b1="$(cpu_ticks "$BROKER_PID")"
  offline="$(db_value "$db" "SELECT count(*) FROM devices WHERE status = 'offline'")"
  # The broker's acks of the storm's statuses are written once it is over
  # (FleetOptions::ack_quiet): the CPU with them, measured when all are stored.
  local acks_ms p2 c2
  acks_ms="$(now_ms)"
  local polls=0  # every 0.5 s (each poll is a scan of the table, counted in the CPU it measures)
  until [[ "$(db_value "$db" "SELECT count(*) FROM devices WHERE published_seq < status_seq")" == 0 ]]; do
    ((++polls <= 60)) || { fail_note "timeouts: the broker's acks not all stored within 30 s"; break; }
    sleep 0.5
  done
  acks_ms=$(($(now_ms) - acks_ms))
  c2="$(cpu_ticks "$SERVICE_PID")" p2="$(pg_cpu_ticks)"
  psql_db "$db" -tAc "SELECT count(*) FILTER (WHERE (extract(epoch from at) * 1000)::bigint <= $deadline_ms + 1000),
      max((extract(epoch from at) * 1000)::bigint) - $deadline_ms FROM device_status_history WHERE to_status = 'offline'" \
    >"$dir/history.txt"
  stop_pid "$sub_pid" 5 TERM
  local json
  json="$("${REPORT[@]}" timeouts "$dir/arrivals.txt" "$deadline_ms" "$n")"
  put_json timeouts "$json"
  put timeouts.offline_after_s "$after"
  put timeouts.offline_in_db "${offline:-0}"
  put timeouts.history_within_1s "$(cut -d'|' -f1 "$dir/history.txt")"
  put timeouts.history_max_late_ms "$(cut -d'|' -f2 "$dir/history.txt" | grep . || echo null)"
  put timeouts.cpu_s "$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  put timeouts.postgres_cpu_s "$(awk -v a="$p0" -v b="$p1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  put timeouts.broker_cpu_s "$(awk -v a="$b0" -v b="$b1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  put timeouts.acks_stored_after_ms "$acks_ms"
  put timeouts.cpu_with_acks_s "$(awk -v a="$c0" -v b="$c2" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  put timeouts.postgres_cpu_with_acks_s "$(awk -v a="$p0" -v b="$p2" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  put timeouts.transitions "$(metric 'maestra_status_transitions_total{reason="restart"}')"
  put timeouts.batches "$(metric 'maestra_transition_batches_total')"
  stop_service
  # The floor: the same number of offline documents through the same broker to
  # the same kind of subscriber, written as fast as the broker takes them, with
  # no service and no Postgres (bench/storm_floor.py).
  local floor_json floor_start floor_b0 floor_b1 floor=""
  "$FLEET_SIM" --subscribe "maestra/devices/+/status" --qos 1 --skip-retained --print-arrivals \
    --port "$BROKER_PORT" --duration 90 >"$dir/floor-arrivals.txt" 2>"$dir/floor-subscriber.err" &
  sub_pid=$!
  track "$sub_pid"
  sleep 0.5
  floor_b0="$(cpu_ticks "$BROKER_PID")"
  if floor_json="$(timeout 150 "$PY" "$MAESTRA_REPO/bench/storm_floor.py" --port "$BROKER_PORT" --count "$n")"; then
    floor_start="$(jget "$floor_json" .start_ms)"
    floor_seen() {
      (($(wc -l <"$dir/floor-arrivals.txt") >= n)) &&
        [[ "$(grep -c '"status":"offline"' "$dir/floor-arrivals.txt")" -ge "$n" ]]
    }
    bounded_wait 60 floor_seen || fail_note "timeouts: the floor's subscriber did not get every document"
    floor_b1="$(cpu_ticks "$BROKER_PID")"
    floor="$("${REPORT[@]}" timeouts "$dir/floor-arrivals.txt" "$floor_start" "$n")"
    put_json timeouts.floor "$floor"
    put timeouts.floor.broker_cpu_s "$(awk -v a="$floor_b0" -v b="$floor_b1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  else
    fail_note "timeouts: bench/storm_floor.py failed: $floor_json"
  fi
  stop_pid "$sub_pid" 5 TERM
  stop_broker
  psql_db postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  say "timeouts: $(jget "$json" .within_1s)/$n offline within ${after}s + 1 s (status arrivals; p99" \
    "$(jget "$json" .p99_ms) ms, max $(jget "$json" .max_ms) ms after the deadline), service CPU" \
    "$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}') s, Postgres CPU" \
    "$(awk -v a="$p0" -v b="$p1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}') s, broker CPU" \
    "$(awk -v a="$b0" -v b="$b1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}') s; p50" \
    "$(jget "$json" .p50_ms) ms; acks stored ${acks_ms} ms later, CPU with them: service" \
    "$(awk -v a="$c0" -v b="$c2" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}') s, Postgres" \
    "$(awk -v a="$p0" -v b="$p2" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}') s; load average at the end" \
    "$(cut -d' ' -f1 /proc/loadavg)"
  [[ -n "$floor" ]] && say "timeouts: floor (broker and subscriber alone, the same $n documents written at once):" \
    "p50 $(jget "$floor" .p50_ms) ms, p99 $(jget "$floor" .p99_ms) ms, max $(jget "$floor" .max_ms) ms," \
    "broker CPU $(jq -r 'select(.k == "timeouts.floor.broker_cpu_s") | .v' "$RAW") s"
  return 0
}

# =====================================================================================================
# 7. Scale: a big registry
# =====================================================================================================
bench_scale() {
  local db=scale dir="$RUN_DIR/scale" n="$SCALE_DEVICES" t0 t1 json
  put ran.scale true
  mkdir -p "$dir"
  say "scale: inserting $n devices"
  migrated_database "$db" || { fail_note "scale: migration"; return 1; }
  t0="$(now_ms)"
  insert_devices "$db" "$n" online "now()" "gen_random_uuid()" || { fail_note "scale: insert"; return 1; }
  t1="$(now_ms)"
  # 1 % offline, spread over the list order: the listing of a status few devices have.
  psql_db "$db" -c "UPDATE devices SET status = 'offline', connected = false, status_reason = 'timeout'
    WHERE hashtext(hardware_id) % 100 = 0" >/dev/null && psql_db "$db" -c "VACUUM ANALYZE devices" >/dev/null ||
    { fail_note "scale: offline devices"; return 1; }
  put scale.devices "$n"
  put scale.insert_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1000}')"
  put_str scale.table_size "$(db_value "$db" "SELECT pg_size_pretty(pg_total_relation_size('devices'))")"
  start_broker scale || return 1
  SERVICE_WAIT=300 start_service scale "$db" || { stop_broker; return 1; }
  put scale.startup_ms $((SERVICE_READY_MS - SERVICE_STARTED_MS))
  put scale.registry_loaded_ms "$(grep -m1 registry_loaded "$SERVICE_LOG" | sed -n 's/.* ms=\([0-9]*\).*/\1/p')"
  put scale.rss_mb "$(rss_mb "$SERVICE_PID")"
  wrk -t1 -c1 -d"${LIST_SECONDS}s" --latency "$SERVICE_URL/devices?status=online&limit=100" \
    >"$dir/list.txt" 2>&1 || fail_note "scale: wrk listing failed"
  json="$("${REPORT[@]}" wrk "$dir/list.txt")"
  put_json scale.list "$json"
  wrk -t1 -c1 -d"${LIST_SECONDS}s" --latency "$SERVICE_URL/devices?status=offline&limit=100" \
    >"$dir/list_rare.txt" 2>&1 || fail_note "scale: wrk listing (offline) failed"
  local rare
  rare="$("${REPORT[@]}" wrk "$dir/list_rare.txt")"
  put_json scale.list_rare "$rare"
  [[ "$(jget "$rare" .non_2xx)" == 0 ]] || fail_note "scale: listing (offline) answered non-2xx"
  put scale.rss_after_mb "$(rss_mb "$SERVICE_PID")"
  [[ "$(jget "$json" .non_2xx)" == 0 ]] || fail_note "scale: listing answered non-2xx"
  stop_service
  stop_broker
  psql_db postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  say "scale: $n devices: ready in $(jq -r 'select(.k == "scale.startup_ms") | .v' "$RAW") ms," \
    "RSS $(jq -r 'select(.k == "scale.rss_mb") | .v' "$RAW") MB, list p50 $(jget "$json" .p50_ms) ms p99 $(jget "$json" .p99_ms) ms;" \
    "1 % offline listed p50 $(jget "$rare" .p50_ms) ms p99 $(jget "$rare" .p99_ms) ms"
}

# =====================================================================================================
# 9. Telemetry ingest (bench/telemetry.sh: its own Postgres and brokers)
# =====================================================================================================
bench_telemetry() {
  local out="$RUN_DIR/telemetry.out" args=() json before
  put ran.telemetry true
  [[ "$MODE" == quick ]] && args=(--quick)
  say "telemetry: bench/telemetry.sh ${args[*]} (its own Postgres and brokers)"
  before="$(ls "$MAESTRA_REPO"/bench-results/telemetry-*.json 2>/dev/null | wc -l)"
  if MAESTRA_BUILD_DIR="$MAESTRA_BUILD_DIR" timeout 900 bash "$MAESTRA_REPO/bench/telemetry.sh" "${args[@]}" \
    >"$out" 2>"$RUN_DIR/telemetry.err"; then
    json="$(ls -t "$MAESTRA_REPO"/bench-results/telemetry-*.json 2>/dev/null | head -n 1)"
    if [[ -z "$json" || "$(ls "$MAESTRA_REPO"/bench-results/telemetry-*.json | wc -l)" -le "$before" ]]; then
      fail_note "telemetry.sh wrote no JSON"
      return 1
    fi
    json="$(jq -c . "$json")"
    put_json telemetry "$json"
    say "telemetry: MQTT $(jget "$json" .mqtt_points_per_s) points/s (pass-through $(jget "$json" .passthrough_points_per_s))," \
      "HTTP batches $(jget "$json" .http_points_per_s) (COPY $(jget "$json" .copy_rows_per_s)), lag $(jget "$json" .sustained_lag_ms) ms"
  else
    fail_note "telemetry.sh failed: $(tail -n 3 "$RUN_DIR/telemetry.err" | tr '\n' ' ')"
    return 1
  fi
}

# =====================================================================================================
# 8. Registration latency (bench/registration_latency.py: its own instances)
# =====================================================================================================
bench_registration() {
  local out="$RUN_DIR/registration.json"
  put ran.registration true
  say "registration: bench/registration_latency.py --count 300 (open vs secure)"
  if timeout 180 "$PY" "$MAESTRA_REPO/bench/registration_latency.py" --count 300 >"$out" 2>"$RUN_DIR/registration.err"; then
    local line
    line="$(grep '^{' "$out" | tail -n 1)"
    put_json registration.open "$(jq -c .open <<<"$line")"
    put_json registration.secure "$(jq -c .secure <<<"$line")"
    say "registration: open p50 $(jget "$line" .open.p50_ms) ms, secure p50 $(jget "$line" .secure.p50_ms) ms"
  else
    fail_note "registration_latency.py failed: $(tail -n 3 "$RUN_DIR/registration.err" | tr '\n' ' ')"
  fi
}

# =====================================================================================================
# 10. Commands to devices (bench/command_round_trip.py: its own instances and fleet-sim)
# =====================================================================================================
bench_commands() {
  local out="$RUN_DIR/commands.json" args=(--devices 1000 --rate 100)
  if [[ "$MODE" == quick ]]; then args+=(--seconds 5 --rounds 3); else args+=(--seconds 20 --rounds 20); fi
  put ran.commands true
  say "commands: bench/command_round_trip.py ${args[*]}"
  if MAESTRA_BUILD_DIR="$MAESTRA_BUILD_DIR" FLEET_MANAGER_BIN="$SERVICE_BIN" timeout 600 "$PY" "$MAESTRA_REPO/bench/command_round_trip.py" "${args[@]}" \
      >"$out" 2>"$RUN_DIR/commands.err"; then
    local line
    line="$(grep '^{' "$out" | tail -n 1)"
    put_json commands.round_trip "$(jq -c .round_trip <<<"$line")"
    put_json commands.stored "$(jq -c .round_trip_stored_ms <<<"$line")"
    put_json commands.throughput "$(jq -c .throughput <<<"$line")"
    say "commands: round trip p50 $(jget "$line" .round_trip.p50_ms) ms p99 $(jget "$line" .round_trip.p99_ms) ms," \
      "$(jget "$line" .throughput.per_s) commands/s"
  else
    fail_note "command_round_trip.py failed: $(tail -n 3 "$RUN_DIR/commands.err" | tr '\n' ' ')"
  fi
}

# =====================================================================================================
main() {
  raise_nofile_limit
  check_tools
  say "mode $MODE$( ((SMOKE)) && echo ' (smoke)'), results in $RUN_DIR"
  start_postgres || { fail_note "Postgres did not start"; return 1; }
  record_meta
  local need_fleet=0
  wanted ingest || wanted http || wanted presence && need_fleet=1
  if ((need_fleet)); then register_fleet || return 1; fi
  wanted ingest && bench_ingest
  wanted db && bench_db
  wanted http && bench_http
  wanted presence && bench_presence
  wanted timeouts && bench_timeouts
  wanted scale && bench_scale
  wanted registration && bench_registration
  wanted telemetry && bench_telemetry
  wanted commands && bench_commands
  return 0
}

main
MAIN_STATUS=$?
cleanup
trap - EXIT

JSON_OUT="$OUT_DIR/bench-$TS.json"
PLOT_ARGS=()
if [[ "$MODE" == full ]] && wanted ingest && ((${#LOADS[@]} > 1)); then
  PLOT_ARGS=(--plot-data "$RUN_DIR/ingest.dat")
fi
SMOKE_ARGS=()
((SMOKE)) && SMOKE_ARGS=(--smoke)
"${REPORT[@]}" render "$RAW" "$JSON_OUT" "${PLOT_ARGS[@]}" "${SMOKE_ARGS[@]}"
REPORT_STATUS=$?
if ((${#PLOT_ARGS[@]})); then
  sub="$(jq -r '.meta | "\(.nproc) cores (\(.cpu)), Mosquitto \(.mosquitto), Postgres \(.postgres), \(.timestamp)"' "$JSON_OUT")"
  if gnuplot -e "datafile='$RUN_DIR/ingest.dat'; outfile='$OUT_DIR/ingest-$TS.png'; subtitle='$sub'" \
    "$MAESTRA_REPO/bench/ingest.gp" 2>"$RUN_DIR/gnuplot.err"; then
    cp "$OUT_DIR/ingest-$TS.png" "$OUT_DIR/ingest.png"
    say "plot: $OUT_DIR/ingest-$TS.png (copy it to docs/bench-ingest.png for BENCHMARKS.md)"
  else
    say "gnuplot failed: $(head -n 3 "$RUN_DIR/gnuplot.err")"
  fi
fi
say "done in $((SECONDS - BEGAN)) s: $JSON_OUT"
if ((SMOKE)) && ((REPORT_STATUS == 0)) && ((MAIN_STATUS == 0)); then
  rm -rf "$RUN_DIR"   # a passing smoke run leaves only its JSON
fi
((MAIN_STATUS != 0)) && exit 1
exit "$REPORT_STATUS"
