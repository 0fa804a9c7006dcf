#!/usr/bin/env bash
# A walk through the MQTT side with mosquitto_pub / mosquitto_sub and curl.
# Demonstrates: registration over MQTT, birth and will, heartbeats, retained
# status documents, maintenance over HTTP, and deletion clearing retained topics.
# Run it against ./scripts/run.sh (broker on 127.0.0.1:1883, API on :8080).
set -euo pipefail
HOST="${MQTT_HOST:-127.0.0.1}"
PORT="${MQTT_PORT:-1883}"
API="${API:-http://127.0.0.1:8080}"
HW="walkthrough-$RANDOM"

step() { printf '\n== %s\n' "$*"; }

step "Watching every Maestra topic for 15 s (background)"
timeout 15 mosquitto_sub -h "$HOST" -p "$PORT" -t 'maestra/#' -v &
sleep 0.3

step "Register $HW over MQTT and read the reply"
reply=$(mosquitto_sub -h "$HOST" -p "$PORT" -t "maestra/hardware/$HW/registration" -C 1 -W 5 &
        sleep 0.3
        mosquitto_pub -h "$HOST" -p "$PORT" -t "maestra/hardware/$HW/register" -q 1 \
          -m "{\"name\":\"Walkthrough\",\"device_type\":\"esp32\",\"hardware_id\":\"$HW\"}"
        wait)
echo "$reply"
ID=$(printf '%s' "$reply" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')

step "Birth on the presence topic, then a heartbeat"
mosquitto_pub -h "$HOST" -p "$PORT" -t "maestra/devices/$ID/presence" -r -q 1 -m '{"state":"online","session":1}'
mosquitto_pub -h "$HOST" -p "$PORT" -t "maestra/devices/$ID/heartbeat" -q 1 -n

step "A device connection with a will, killed abruptly: the broker sends the will"
mosquitto_sub -h "$HOST" -p "$PORT" -t "maestra/devices/$ID/commands" -i "dev-$ID" \
  --will-topic "maestra/devices/$ID/presence" --will-payload '{"state":"offline","session":1}' \
  --will-retain --will-qos 1 &
sub=$!
sleep 0.5
kill -9 "$sub"
sleep 1

step "The retained status says offline (reason will)"
mosquitto_sub -h "$HOST" -p "$PORT" -t "maestra/devices/$ID/status" -C 1 -W 3

step "Maintenance over HTTP, then delete"
curl -s -X PATCH "$API/devices/$ID" -d '{"status":"maintenance"}'; echo
curl -s -o /dev/null -w 'DELETE -> %{http_code}\n' -X DELETE "$API/devices/$ID"
sleep 0.5
wait || true
