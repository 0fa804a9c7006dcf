#!/usr/bin/env bash
# bench/telemetry.sh — the telemetry ingest benchmark (issue 14), side by side in
# one run on this machine, against a private Postgres 15 and fresh Mosquitto
# brokers on free loopback ports (scripts/lib.sh), same fleet-sim load for each:
#
#   passthrough  the broker alone: telemetry messages/s Mosquitto delivers to a
#                plain subscriber (fleet-sim --subscribe), times metrics per message
#   mqtt         fleet-manager: points/s stored (maestra_telemetry_points_total and
#                a count of the rows), and the lag until the last is queryable
#   heartbeats   MQTT heartbeats/s through fleet-manager, alone and while telemetry
#                flows at the rate it sustains, each against the broker's ceiling:
#                a plain subscriber's heartbeats/s on a fresh broker, alone and while
#                the same telemetry flows to a second plain subscriber
#   http         wrk, POST /metrics/batch of 1,000 points: points/s stored
#   copy         the ceiling: a raw COPY of the same rows into the same table
#
# Usage: bench/telemetry.sh [--quick]   (quick: 200 devices, 8 s runs; default
#        1,000 devices, 15 s runs). Env: DEVICES, METRICS (per message, 5),
#        RUN_SECONDS, COPY_ROWS, UNTHROTTLED_RATE (quick: 40,000 messages/s), DRAIN_SECONDS, PROFILE=1 (perf record of fleet-manager during the
#        MQTT run, bench-results/telemetry-<timestamp>.perf). Prints a table; writes
#        bench-results/telemetry-<timestamp>.json. Exit 1 if a step failed.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$MAESTRA_REPO" || exit 1

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
DEVICES="${DEVICES:-$((QUICK ? 200 : 1000))}"
METRICS="${METRICS:-5}"
RUN_SECONDS="${RUN_SECONDS:-$((QUICK ? 8 : 15))}"
COPY_ROWS="${COPY_ROWS:-$((QUICK ? 300000 : 1000000))}"
# The "unthrottled" MQTT run builds a backlog the service then drains: how long to
# wait for it. Quick mode caps the publisher instead (UNTHROTTLED_RATE messages/s,
# 200,000 points/s at 5 metrics: above what the service stores here, so still its
# ceiling, but a backlog of seconds, not of minutes, in the smoke run of test.sh).
DRAIN_SECONDS="${DRAIN_SECONDS:-$((QUICK ? 60 : 180))}"
UNTHROTTLED_RATE="${UNTHROTTLED_RATE:-$((QUICK ? 40000 : 0))}"
SERVICE_BIN="$MAESTRA_BUILD_DIR/fleet-manager"
FLEET_SIM="$MAESTRA_BUILD_DIR/tools/fleet-sim/fleet-sim"
PSQL_BIN="$PG_BIN/psql"
TS="$(date -u +%Y%m%dT%H%M%SZ)"
OUT_DIR="$MAESTRA_REPO/bench-results"
mkdir -p "$OUT_DIR"
TMP="$(mktemp -d /tmp/maestra-telemetry-bench.XXXXXX)"
chmod 755 "$TMP"
BEGAN=$SECONDS
say() { printf '[telemetry-bench %3ds] %s\n' "$((SECONDS - BEGAN))" "$*" >&2; }
now_ms() { date +%s%3N; }
FAILED=0
fail() { say "FAILED: $*"; FAILED=1; }

PIDS=()
BROKER_PIDFILES=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid" 10 2>/dev/null; done
  local f
  for f in "${BROKER_PIDFILES[@]}"; do mosquitto_stop "$f"; done
  [[ -n "${PG_DATA:-}" ]] && pg_stop_cluster "$PG_DATA"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in "$SERVICE_BIN" "$FLEET_SIM"; do [[ -x "$tool" ]] || { echo "missing $tool (build first)" >&2; exit 1; }; done
for tool in wrk jq curl mosquitto; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done

# --- Postgres (durable defaults, as bench.sh) and brokers ---------------------------------------
PG_DATA="$TMP/pg/data"
PG_PORT="$(first_free_port 26432)"
mkdir -p "$TMP/pg"
pg_own "$TMP/pg"
pg_init_cluster "$PG_DATA" >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; exit 1; }
pg_start_cluster "$PG_DATA" "$PG_PORT" "$TMP/pg/sock" "$TMP/pg/postgres.log" \
  "-c max_connections=100 -c shared_buffers=256MB" || exit 1
psql_db() { "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" "${@:2}"; }
db_value() { psql_db bench -tAc "$1"; }
psql_db postgres -c "CREATE DATABASE bench" >/dev/null || exit 1

BROKER_PORT=""
start_broker() {
  local dir="$TMP/mq-$1" ws
  mkdir -p "$dir/data"
  BROKER_PORT="$(first_free_port $((21883 + RANDOM % 1000)))"
  ws="$(first_free_port $((BROKER_PORT + 1)))"
  mosquitto_render_conf "$MAESTRA_REPO/mosquitto/mosquitto.conf" "$dir/mosquitto.conf" "$BROKER_PORT" "$ws" \
    "$dir/data/" "$dir/mosquitto.log"
  BROKER_PIDFILES+=("$dir/mosquitto.pid")
  mosquitto_start "$dir/mosquitto.conf" "$BROKER_PORT" "$dir/mosquitto.log" "$dir/mosquitto.pid"
}

# publish RUN_ID OUT [args]: the telemetry load, unthrottled, QoS 1.
publish() {
  local run="$1" out="$2"
  shift 2
  "$FLEET_SIM" --port "$BROKER_PORT" --devices "$DEVICES" --qos 1 --rate "${PUBLISH_RATE:-0}" --telemetry-metrics "$METRICS" \
    --duration "$RUN_SECONDS" --connect-rate 10000 --on-exit disconnect --quiet --run-id "$run" "$@" \
    >"$out" 2>"$out.err"
}
summary_of() { grep '^{' "$1" | tail -n 1; }

# --- 1. the broker's pass-through ----------------------------------------------------------------
say "pass-through: $DEVICES devices, $METRICS metrics a message, ${RUN_SECONDS}s, to a plain subscriber"
start_broker passthrough || exit 1
"$FLEET_SIM" --subscribe "maestra/devices/+/telemetry/metrics" --qos 1 --port "$BROKER_PORT" \
  --duration $((RUN_SECONDS + 40)) >"$TMP/sub.out" 2>"$TMP/sub.err" &
SUB=$!
PIDS+=("$SUB")
for _ in $(seq 50); do grep -q "elapsed=" "$TMP/sub.out" 2>/dev/null && break; sleep 0.1; done
# The same offered load as the service's "unthrottled" run (quick mode caps both
# at UNTHROTTLED_RATE messages/s; full mode caps neither).
PUBLISH_RATE="$UNTHROTTLED_RATE" publish "passthrough-$TS" "$TMP/pass.out" --register none
PASS_ACKED="$(summary_of "$TMP/pass.out" | jq -r '.acked // 0')"
for _ in $(seq 100); do
  got="$(tail -n 1 "$TMP/sub.out" | sed -n 's/.* received=\([0-9]*\).*/\1/p')"
  [[ -n "$got" && "$got" -ge "$PASS_ACKED" ]] && break
  sleep 0.1
done
stop_pid "$SUB" 5 TERM
PASS_RATE_MSG="$(summary_of "$TMP/sub.out" | jq -r '.active_rate // 0')"
PASS_POINTS="$(awk -v r="$PASS_RATE_MSG" -v m="$METRICS" 'BEGIN {printf "%.0f", r * m}')"
mosquitto_stop "${BROKER_PIDFILES[-1]}"
say "pass-through: $(printf '%.0f' "$PASS_RATE_MSG") messages/s = $PASS_POINTS points/s"

# --- 2. fleet-manager over MQTT ------------------------------------------------------------------
start_broker service || exit 1
SERVICE_PORT="$(first_free_port 28180)"
SERVICE_URL="http://127.0.0.1:$SERVICE_PORT"
env MAESTRA_HTTP_HOST=127.0.0.1 MAESTRA_HTTP_PORT="$SERVICE_PORT" \
  MAESTRA_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/bench" \
  MAESTRA_MQTT_URL="tcp://127.0.0.1:$BROKER_PORT" MAESTRA_MQTT_CLIENT_ID="fleet-manager-telemetry-bench" \
  "$SERVICE_BIN" >"$TMP/service.log" 2>&1 </dev/null &
SERVICE_PID=$!
PIDS+=("$SERVICE_PID")
for _ in $(seq 200); do curl -fsS --max-time 1 "$SERVICE_URL/health" 2>/dev/null | grep -q '"status":"ok"' && break; sleep 0.1; done
curl -fsS "$SERVICE_URL/health" | grep -q '"status":"ok"' || { tail -n 20 "$TMP/service.log" >&2; exit 1; }
metric() { curl -fsS --max-time 2 "$SERVICE_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
points_mqtt() { metric 'maestra_telemetry_points_total{transport="mqtt"}'; }
points_http() { metric 'maestra_telemetry_points_total{transport="http"}'; }
# MQTT telemetry messages the service dropped because its queue was full (an
# unthrottled publisher outruns the writer: load shedding, counted).
dropped_full() { metric 'maestra_telemetry_dropped_total{reason="queue_full"}'; }

say "registering $DEVICES devices"
"$FLEET_SIM" --port "$BROKER_PORT" --http "$SERVICE_URL" --devices "$DEVICES" --register http \
  --run-id "telemetry-$TS" --write-ids "$TMP/ids.txt" --interval-ms 600000 --duration 0.5 --connect-rate 10000 \
  --on-exit disconnect --quiet >"$TMP/register.out" 2>"$TMP/register.err" || fail "registration"

# mqtt_run NAME: the publisher through fleet-manager (PUBLISH_RATE messages/s, 0 =
# unthrottled); sets MQTT_POINTS (stored points/s over publishing + draining),
# LAG_MS (from the end of publishing until the last point is stored, i.e.
# queryable), ACKED, SERVICE_CPU, DROPPED (messages shed with a full queue).
mqtt_run() {
  local name="$1" p d P0 P1 D0 CPU0 CPU1 END_MS STORED_MS SUMMARY PUB_SECONDS EXPECTED SAMPLER PERF_PID=""
  P0="$(points_mqtt)"
  D0="$(dropped_full)"
  CPU0="$(awk '{print $14 + $15}' "/proc/$SERVICE_PID/stat")"
  ( for _ in $(seq $((RUN_SECONDS + 40))); do
      printf '%s %s\n' "$(now_ms)" "$(curl -fsS --max-time 1 "$SERVICE_URL/metrics" 2>/dev/null |
        awk '/^maestra_telemetry_(points_total|queued_rows|dropped_total|batch_rows_(sum|count)|flush_seconds_(sum|count))|^maestra_mqtt_messages_total/ {printf "%s=%s ", $1, $2}')"
      sleep 1
    done ) >"$OUT_DIR/telemetry-$TS-$name-samples.txt" &
  SAMPLER=$!
  PIDS+=("$SAMPLER")
  if [[ -n "${PROFILE:-}" && "$name" == unthrottled ]]; then
    perf record -e cpu-clock -F 499 -g -p "$SERVICE_PID" -o "$OUT_DIR/telemetry-$TS.perf" -- sleep "$RUN_SECONDS" \
      >/dev/null 2>&1 &
    PERF_PID=$!
  fi
  publish "$name-$TS" "$TMP/$name.out" --ids-file "$TMP/ids.txt" --register none
  END_MS="$(now_ms)"
  [[ -n "$PERF_PID" ]] && wait "$PERF_PID"
  SUMMARY="$(summary_of "$TMP/$name.out")"
  ACKED="$(jq -r '.acked // 0' <<<"$SUMMARY")"
  PUB_SECONDS="$(jq -r '.duration_s // 0' <<<"$SUMMARY")"
  EXPECTED=$((${P0%.*} + ACKED * METRICS))
  STORED_MS=""
  local drain_until=$((SECONDS + DRAIN_SECONDS))
  while ((SECONDS < drain_until)); do
    p="$(points_mqtt)"
    d="$(dropped_full)"
    # Stored, or dropped (queue full: counted per message) — nothing left in flight.
    if [[ -n "$p" ]] && awk -v p="$p" -v d="${d:-0}" -v d0="${D0:-0}" -v m="$METRICS" -v e="$EXPECTED" \
      'BEGIN {exit !(p + (d - d0) * m >= e)}'; then STORED_MS="$(now_ms)"; break; fi
    sleep 0.05
  done
  CPU1="$(awk '{print $14 + $15}' "/proc/$SERVICE_PID/stat")"
  kill "$SAMPLER" 2>/dev/null
  P1="$(points_mqtt)"
  DROPPED="$(awk -v a="${d:-0}" -v b="${D0:-0}" 'BEGIN {printf "%d", a - b}')"
  ((DROPPED > 0)) && say "MQTT $name: the service dropped $DROPPED messages (its queue was full: the publisher outran the writer)"
  if [[ -z "$STORED_MS" ]]; then
    fail "MQTT $name: stored $((${P1%.*} - ${P0%.*})) of $((ACKED * METRICS)) points within $DRAIN_SECONDS s of the end"
    STORED_MS="$(now_ms)"
  fi
  LAG_MS=$((STORED_MS - END_MS))
  MQTT_POINTS="$(awk -v n="$((${P1%.*} - ${P0%.*}))" -v s="$PUB_SECONDS" -v l="$LAG_MS" 'BEGIN {printf "%.0f", n / (s + l / 1000)}')"
  SERVICE_CPU="$(awk -v a="$CPU0" -v b="$CPU1" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b - a) / t}')"
  say "MQTT $name: $ACKED messages acknowledged, $MQTT_POINTS points/s stored, the last queryable ${LAG_MS} ms after the load ended"
}

say "MQTT ingest, unthrottled$( ((UNTHROTTLED_RATE)) && echo " (capped at $UNTHROTTLED_RATE messages/s)"): the same load through fleet-manager"
PUBLISH_RATE="$UNTHROTTLED_RATE" mqtt_run unthrottled
MAX_POINTS="$MQTT_POINTS" MAX_LAG="$LAG_MS" MAX_CPU="$SERVICE_CPU" MAX_ACKED="$ACKED" MAX_DROPPED="$DROPPED"
# Lag at a load it sustains: 80 % of the unthrottled rate.
SUSTAINED_RATE="$(awk -v p="$MAX_POINTS" -v m="$METRICS" 'BEGIN {printf "%d", p * 0.8 / m}')"
say "MQTT ingest, offered $((SUSTAINED_RATE * METRICS)) points/s (80 %)"
PUBLISH_RATE="$SUSTAINED_RATE" mqtt_run sustained
SUSTAINED_POINTS="$MQTT_POINTS" SUSTAINED_LAG="$LAG_MS"
ROWS="$(db_value "SELECT count(*) FROM metrics")"

# --- 2b. heartbeats, alone and while telemetry flows ---------------------------------------------
# The same devices heartbeat (unthrottled, empty payload) as fast as the service takes
# them: alone, then while a second publisher (client ids "t-<id>") sends telemetry at
# the sustained rate above. Heartbeats/s is the delta of maestra_heartbeats_total.
heartbeats_mqtt() { metric 'maestra_heartbeats_total{transport="mqtt"}'; }
heartbeat_run() {
  local out="$1" h0 h1 seconds
  h0="$(heartbeats_mqtt)"
  "$FLEET_SIM" --port "$BROKER_PORT" --devices "$DEVICES" --qos 1 --rate 0 --duration "$RUN_SECONDS" \
    --connect-rate 10000 --on-exit disconnect --quiet --ids-file "$TMP/ids.txt" --register none \
    >"$out" 2>"$out.err"
  sleep 1  # the service's queue drains (heartbeats are applied in memory, well under a second)
  h1="$(heartbeats_mqtt)"
  seconds="$(summary_of "$out" | jq -r '.duration_s // 0')"
  HB_RATE="$(awk -v a="${h0:-0}" -v b="${h1:-0}" -v s="$seconds" 'BEGIN {if (s > 0) printf "%.0f", (b - a) / s; else print 0}')"
}
say "heartbeats alone, unthrottled, ${RUN_SECONDS}s"
heartbeat_run "$TMP/hb-alone.out"
HB_ALONE="$HB_RATE"
say "heartbeats alone: $HB_ALONE/s"
say "heartbeats while telemetry flows at $((SUSTAINED_RATE * METRICS)) points/s"
T0="$(points_mqtt)"
PUBLISH_RATE="$SUSTAINED_RATE" "$FLEET_SIM" --port "$BROKER_PORT" --devices "$DEVICES" --qos 1 \
  --rate "$SUSTAINED_RATE" --telemetry-metrics "$METRICS" --duration $((RUN_SECONDS + 4)) --connect-rate 10000 \
  --on-exit disconnect --quiet --ids-file "$TMP/ids.txt" --register none --client-id-prefix t- \
  >"$TMP/hb-telemetry.out" 2>"$TMP/hb-telemetry.err" &
TPUB=$!
PIDS+=("$TPUB")
sleep 2
heartbeat_run "$TMP/hb-with.out"
HB_WITH="$HB_RATE"
wait "$TPUB"
sleep 1
T1="$(points_mqtt)"
HB_TELEMETRY_POINTS="$(awk -v a="${T0:-0}" -v b="${T1:-0}" -v s="$((RUN_SECONDS + 5))" 'BEGIN {printf "%.0f", (b - a) / s}')"
say "heartbeats while telemetry flows: $HB_WITH/s (telemetry stored meanwhile: $HB_TELEMETRY_POINTS points/s)"

# --- 2c. the broker's heartbeat ceiling, alone and under the same telemetry load ------------------
# A fresh broker and no service: plain subscribers (fleet-sim --subscribe, QoS 1)
# take the heartbeats and, in the second run, the telemetry, which a second
# publisher sends at the same rate as in 2b. The ceiling is the heartbeats the
# subscriber received over the heartbeat publisher's duration_s, the same measure
# as the service's heartbeats/s above.
subscriber_start() {  # FILTER OUT: sets SUB_PID
  "$FLEET_SIM" --subscribe "$1" --qos 1 --port "$BROKER_PORT" --duration $((RUN_SECONDS + 60)) >"$2" 2>"$2.err" &
  SUB_PID=$!
  PIDS+=("$SUB_PID")
  for _ in $(seq 50); do grep -q "elapsed=" "$2" 2>/dev/null && break; sleep 0.1; done
}
received_of() { tail -n 1 "$1" | sed -n 's/.* received=\([0-9]*\).*/\1/p'; }
hb_ceiling_run() {  # NAME WITH_TELEMETRY(0/1): sets HB_CEIL
  local name="$1" with="$2" hb_sub tel_sub="" tel_pub="" acked got seconds out="$TMP/hbceil-$1"
  start_broker "hbceil-$name" || { HB_CEIL=0; return; }
  subscriber_start "maestra/devices/+/heartbeat" "$out.sub"
  hb_sub=$SUB_PID
  if ((with)); then
    subscriber_start "maestra/devices/+/telemetry/metrics" "$out.tsub"
    tel_sub=$SUB_PID
    "$FLEET_SIM" --port "$BROKER_PORT" --devices "$DEVICES" --qos 1 --rate "$SUSTAINED_RATE" \
      --telemetry-metrics "$METRICS" --duration $((RUN_SECONDS + 4)) --connect-rate 10000 --on-exit disconnect \
      --quiet --ids-file "$TMP/ids.txt" --register none --client-id-prefix t- >"$out.tpub" 2>"$out.tpub.err" &
    tel_pub=$!
    PIDS+=("$tel_pub")
    sleep 2
  fi
  "$FLEET_SIM" --port "$BROKER_PORT" --devices "$DEVICES" --qos 1 --rate 0 --duration "$RUN_SECONDS" \
    --connect-rate 10000 --on-exit disconnect --quiet --ids-file "$TMP/ids.txt" --register none \
    >"$out.pub" 2>"$out.pub.err"
  acked="$(summary_of "$out.pub" | jq -r '.acked // 0')"
  for _ in $(seq 100); do
    got="$(received_of "$out.sub")"
    [[ -n "$got" && "$got" -ge "$acked" ]] && break
    sleep 0.1
  done
  got="$(received_of "$out.sub")"
  seconds="$(summary_of "$out.pub" | jq -r '.duration_s // 0')"
  HB_CEIL="$(awk -v n="${got:-0}" -v s="$seconds" 'BEGIN {if (s > 0) printf "%.0f", n / s; else print 0}')"
  [[ -n "$tel_pub" ]] && wait "$tel_pub"
  stop_pid "$hb_sub" 5 TERM
  [[ -n "$tel_sub" ]] && stop_pid "$tel_sub" 5 TERM
  mosquitto_stop "${BROKER_PIDFILES[-1]}"
}
say "broker's heartbeat ceiling alone (plain subscriber, fresh broker)"
hb_ceiling_run alone 0
HB_CEIL_ALONE="$HB_CEIL"
say "broker's heartbeat ceiling alone: $HB_CEIL_ALONE/s"
say "broker's heartbeat ceiling while telemetry flows at $((SUSTAINED_RATE * METRICS)) points/s to a second plain subscriber"
hb_ceiling_run with 1
HB_CEIL_WITH="$HB_CEIL"
say "broker's heartbeat ceiling while telemetry flows: $HB_CEIL_WITH/s"

# --- 3. HTTP batches -----------------------------------------------------------------------------
say "HTTP: wrk, 8 connections, POST /metrics/batch of 1,000 points, ${RUN_SECONDS}s"
H0="$(points_http)"
wrk -t2 -c8 -d"${RUN_SECONDS}s" -s bench/wrk_metrics_batch.lua "$SERVICE_URL" -- "$TMP/ids.txt" >"$TMP/wrk.out" 2>&1 ||
  fail "wrk"
WRK="$(grep '^{' "$TMP/wrk.out" | tail -n 1)"
H1="$(points_http)"
HTTP_POINTS="$(awk -v a="${H0:-0}" -v b="${H1:-0}" -v d="$(jq -r '.duration_us' <<<"$WRK")" 'BEGIN {printf "%.0f", (b - a) / (d / 1e6)}')"
[[ "$(jq -r '.non2xx' <<<"$WRK")" == 0 ]] || fail "HTTP: non-2xx answers: $WRK"
say "HTTP: $HTTP_POINTS points/s stored (p50 $(jq -r .p50_ms <<<"$WRK") ms, p99 $(jq -r .p99_ms <<<"$WRK") ms a batch)"

# --- 4. the ceiling: a raw COPY of the same rows into the same table ------------------------------
say "COPY: $COPY_ROWS rows into metrics"
NAME_ID="$(db_value "SELECT min(id) FROM metric_names")"
awk -v n="$COPY_ROWS" -v name="${NAME_ID:-1}" -v now="$(date +%s)" -v ids="$TMP/ids.txt" 'BEGIN {
  while ((getline line < ids) > 0) id[k++] = line
  for (i = 0; i < n; i++) printf "%s,%d,%s,%.2f\n", id[i % k], name, strftime("%Y-%m-%d %H:%M:%S+00", now - 60 + (i % 60), 1), i % 100 + 0.5
}' >"$TMP/copy.csv"
C0="$(now_ms)"
psql_db bench -c "\\copy metrics (device_id, name_id, time, value) FROM '$TMP/copy.csv' WITH (FORMAT csv)" ||
  fail "COPY"
C1="$(now_ms)"
COPY_POINTS="$(awk -v n="$COPY_ROWS" -v ms="$((C1 - C0))" 'BEGIN {printf "%.0f", n / (ms / 1000)}')"
say "COPY: $COPY_POINTS rows/s"

kill -TERM "$SERVICE_PID" 2>/dev/null
stop_pid "$SERVICE_PID" 20

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
printf '\nTelemetry ingest, %s devices, %s metrics per MQTT message, %s s runs (%s)\n' "$DEVICES" "$METRICS" "$RUN_SECONDS" "$TS"
printf '%-46s %14s %10s\n' "measurement" "points/s" "ratio"
printf '%-46s %14s %10s\n' "broker pass-through (Mosquitto alone)" "$PASS_POINTS" "1.00"
printf '%-46s %14s %10s\n' "MQTT -> fleet-manager -> Postgres, stored" "$MAX_POINTS" "$(ratio "$MAX_POINTS" "$PASS_POINTS")"
printf '%-46s %14s %10s\n' "raw COPY into metrics (ceiling)" "$COPY_POINTS" "1.00"
printf '%-46s %14s %10s\n' "HTTP POST /metrics/batch (1,000 points)" "$HTTP_POINTS" "$(ratio "$HTTP_POINTS" "$COPY_POINTS")"
printf 'lag until the last MQTT point is queryable after the load ends: %s ms unthrottled (a backlog), %s ms at %s points/s offered (%s stored)\n' "$MAX_LAG" "$SUSTAINED_LAG" "$((SUSTAINED_RATE * METRICS))" "$SUSTAINED_POINTS"
printf 'service CPU during the unthrottled MQTT run: %s s; rows in metrics at the end: %s\n' "$MAX_CPU" "$ROWS"
printf 'heartbeats/s through fleet-manager: %s alone, %s while telemetry flows (%s points/s stored meanwhile)\n' "$HB_ALONE" "$HB_WITH" "$HB_TELEMETRY_POINTS"
printf "heartbeats/s the broker passes to a plain subscriber (its ceiling): %s alone, %s while the same telemetry flows\n" "$HB_CEIL_ALONE" "$HB_CEIL_WITH"
printf 'heartbeats through fleet-manager / ceiling: %s alone, %s while telemetry flows\n' "$(ratio "$HB_ALONE" "$HB_CEIL_ALONE")" "$(ratio "$HB_WITH" "$HB_CEIL_WITH")"
printf 'targets: MQTT >= 100,000 points/s and >= 0.7 of pass-through; HTTP >= 0.3 of COPY; lag < 1,000 ms; heartbeats while telemetry flows at the ceiling (>= 0.9 of it)\n'

jq -n --arg ts "$TS" --argjson devices "$DEVICES" --argjson metrics "$METRICS" --argjson seconds "$RUN_SECONDS" \
  --argjson pass "$PASS_POINTS" --argjson mqtt "$MAX_POINTS" --argjson http "$HTTP_POINTS" \
  --argjson copy "$COPY_POINTS" --argjson lag "$MAX_LAG" --argjson acked "$MAX_ACKED" --argjson cpu "$MAX_CPU" \
  --argjson dropped "${MAX_DROPPED:-0}" --argjson unthrottled_rate "$UNTHROTTLED_RATE" \
  --argjson sustained_rate "$((SUSTAINED_RATE * METRICS))" --argjson sustained "$SUSTAINED_POINTS" \
  --argjson sustained_lag "$SUSTAINED_LAG" --argjson hb_alone "$HB_ALONE" --argjson hb_with "$HB_WITH" \
  --argjson hb_telemetry "$HB_TELEMETRY_POINTS" --argjson hb_ceil_alone "${HB_CEIL_ALONE:-0}" \
  --argjson hb_ceil_with "${HB_CEIL_WITH:-0}" \
  --argjson wrk "${WRK:-null}" \
  '{ts:$ts, devices:$devices, metrics_per_message:$metrics, run_seconds:$seconds,
    passthrough_points_per_s:$pass, mqtt_points_per_s:$mqtt, mqtt_messages_acked:$acked, mqtt_lag_ms:$lag,
    mqtt_messages_dropped_queue_full:$dropped, mqtt_offered_messages_per_s:$unthrottled_rate,
    sustained_offered_points_per_s:$sustained_rate, sustained_points_per_s:$sustained, sustained_lag_ms:$sustained_lag,
    heartbeats_per_s_alone:$hb_alone, heartbeats_per_s_with_telemetry:$hb_with,
    telemetry_points_per_s_with_heartbeats:$hb_telemetry,
    heartbeat_ceiling_per_s_alone:$hb_ceil_alone, heartbeat_ceiling_per_s_with_telemetry:$hb_ceil_with,
    service_cpu_s:$cpu, http_points_per_s:$http, http_wrk:$wrk, copy_rows_per_s:$copy}' \
  >"$OUT_DIR/telemetry-$TS.json"
exit "$FAILED"
