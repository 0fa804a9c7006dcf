#!/usr/bin/env bash
# examples/shell/walkthrough.sh — a runnable walk through the MQTT side of fleet-manager
# with mosquitto_rr / mosquitto_sub / mosquitto_pub and curl (owned by the examples;
# the same steps as the README's MQTT section, explained in docs/protocol.md).
# Shows: registration over MQTT v5 request/response, a device connection with a
# last will, its birth, heartbeats (plain and reporting an error), the will turning
# into `offline`, a reconnect with a newer session, a clean goodbye, maintenance
# over HTTP, and deletion clearing the retained topics.
# Every step waits for what it needs (no fixed sleeps), each wait is bounded, and the
# script exits non-zero at the first step that does not happen.
# Run it against ./scripts/run.sh (broker on 127.0.0.1:1883, API on :8080), or set
# MQTT_HOST, MQTT_PORT, API and TOPIC_PREFIX for another deployment.
set -euo pipefail
HOST="${MQTT_HOST:-127.0.0.1}"
PORT="${MQTT_PORT:-1883}"
API="${API:-http://127.0.0.1:8080}"
PREFIX="${TOPIC_PREFIX:-maestra}"
HW="${HARDWARE_ID:-walkthrough-$$-$RANDOM}"
MQTT=(-h "$HOST" -p "$PORT")

for tool in mosquitto_rr mosquitto_sub mosquitto_pub curl; do
  command -v "$tool" >/dev/null || { echo "walkthrough: $tool is missing (apt-get install mosquitto-clients curl)" >&2; exit 1; }
done

WORK="$(mktemp -d)"
DEVICE_PID=""
cleanup() {
  if [[ -n "$DEVICE_PID" ]]; then kill -9 "$DEVICE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

# The device's retained status document, read again (at most 50 times, 0.1 s apart)
# until it shows STATUS with REASON; printed when it does.
wait_status() {
  local want="$1" reason="$2" doc="" _
  for _ in $(seq 50); do
    doc="$(mosquitto_sub "${MQTT[@]}" -t "$PREFIX/devices/$ID/status" -C 1 -W 2 2>/dev/null || true)"
    if [[ "$doc" == *"\"status\":\"$want\""*"\"reason\":\"$reason\""* ]]; then
      echo "$doc"
      return 0
    fi
    sleep 0.1
  done
  echo "walkthrough: the status never became $want ($reason); last document: ${doc:-none}" >&2
  exit 1
}

# A device connection holding a will for SESSION, in the background. It subscribes
# to its own retained status, so its output file gets a line as soon as it is
# connected and subscribed: that is what we wait for (at most 10 s).
connect_device() {
  local session="$1" out="$WORK/device-$1.out"
  mosquitto_sub "${MQTT[@]}" -q 1 -t "$PREFIX/devices/$ID/status" \
    --will-topic "$PREFIX/devices/$ID/presence" --will-payload "{\"state\":\"offline\",\"session\":$session}" \
    --will-retain --will-qos 1 >"$out" &
  DEVICE_PID=$!
  local _
  for _ in $(seq 100); do
    [[ -s "$out" ]] && { echo "connected (session $session); its retained status: $(head -n 1 "$out")"; return 0; }
    kill -0 "$DEVICE_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "walkthrough: the device connection did not come up" >&2
  exit 1
}

step "1. Register $HW over MQTT (v5 request/response: mosquitto_rr subscribes to the reply topic first)"
reply="$(mosquitto_rr "${MQTT[@]}" -q 1 -W 10 -t "$PREFIX/hardware/$HW/register" -e "$PREFIX/hardware/$HW/registration" \
  -m '{"name":"Walkthrough","device_type":"esp32","firmware_version":"1.0.0"}')" ||
  { echo "walkthrough: no registration reply within 10 s (is fleet-manager running on this broker?)" >&2; exit 1; }
echo "$reply"
ID="$(printf '%s' "$reply" | sed -n 's/.*"id":"\([0-9a-f-]\{36\}\)".*/\1/p')"
[[ -n "$ID" ]] || { echo "walkthrough: the reply has no id" >&2; exit 1; }

SESSION="$(date +%s)"
step "2. The device connects with its will (session $SESSION), kept open in the background"
connect_device "$SESSION"

step "3. Birth on the presence topic (retained, QoS 1), then a heartbeat"
mosquitto_pub "${MQTT[@]}" -t "$PREFIX/devices/$ID/presence" -r -q 1 -m "{\"state\":\"online\",\"session\":$SESSION}"
mosquitto_pub "${MQTT[@]}" -t "$PREFIX/devices/$ID/heartbeat" -q 1 -n
wait_status online registered

step "4. A heartbeat reporting an error, then a plain one clearing it"
mosquitto_pub "${MQTT[@]}" -t "$PREFIX/devices/$ID/heartbeat" -q 1 -m '{"status":"error"}'
wait_status error reported_error
mosquitto_pub "${MQTT[@]}" -t "$PREFIX/devices/$ID/heartbeat" -q 1 -n
wait_status online heartbeat

step "5. The connection dies abruptly (kill -9): the broker publishes the will"
kill -9 "$DEVICE_PID"
wait "$DEVICE_PID" 2>/dev/null || true
DEVICE_PID=""
wait_status offline will

step "6. It reconnects with a newer session and publishes its birth"
SESSION=$((SESSION + 1))
connect_device "$SESSION"
mosquitto_pub "${MQTT[@]}" -t "$PREFIX/devices/$ID/presence" -r -q 1 -m "{\"state\":\"online\",\"session\":$SESSION}"
wait_status online heartbeat

step "7. A clean goodbye, then the connection closes without its will"
mosquitto_pub "${MQTT[@]}" -t "$PREFIX/devices/$ID/presence" -r -q 1 \
  -m "{\"state\":\"offline\",\"session\":$SESSION,\"reason\":\"disconnect\"}"
wait_status offline disconnect
kill "$DEVICE_PID"   # SIGTERM: mosquitto_sub disconnects cleanly, the broker drops the will
wait "$DEVICE_PID" 2>/dev/null || true
DEVICE_PID=""

step "8. Maintenance over HTTP, its history, then delete"
curl -sS -X PATCH "$API/devices/$ID" -d '{"status":"maintenance"}'; echo
wait_status maintenance admin
curl -sS "$API/devices/$ID/history?limit=10"; echo
curl -sS -o /dev/null -w 'DELETE -> %{http_code}\n' -X DELETE "$API/devices/$ID"
# Deletion clears the retained status: a new subscriber then gets nothing.
for _ in $(seq 50); do
  if ! mosquitto_sub "${MQTT[@]}" -t "$PREFIX/devices/$ID/status" -C 1 -W 1 >/dev/null 2>&1; then
    echo "the retained status of $ID is gone"
    exit 0
  fi
  sleep 0.1
done
echo "walkthrough: the retained status was not cleared" >&2
exit 1
