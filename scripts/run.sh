#!/usr/bin/env bash
# scripts/run.sh — run fleet-manager locally (owned by the tooling): checks first
# what could stop it (state folder, sudo, the HTTP port, another run.sh), installs
# the missing Debian packages and the dashboard's npm packages, builds, starts a
# private Postgres 15 cluster and a Mosquitto broker on loopback, then runs
# build/fleet-manager in the foreground. Ctrl-C or SIGTERM stops the service,
# then Mosquitto, then Postgres.
#
#   scripts/run.sh [fleet-manager args...]
#
# State (Postgres cluster, broker persistence, secrets, logs) lives in one folder
# per clone, outside the clone so that Postgres can enter it even when the clone
# is in a mode-700 home: /var/lib/maestra/<clone name>-<hash> as root,
# ~/.local/state/maestra/<clone name>-<hash> otherwise (default_run_dir in
# scripts/lib.sh). It survives restarts; run.sh prints it. One run.sh per state
# folder: a second one exits at once, naming the first one's pid.
#
# Environment (all optional):
#   MAESTRA_RUN_DIR       the state folder (overrides the default above).
#   MAESTRA_HTTP_PORT (8080), MAESTRA_HTTP_HOST (127.0.0.1) and every other
#     MAESTRA_* variable pass through to the service.
#   MAESTRA_DATABASE_URL  set: use that database, start no Postgres.
#   MAESTRA_MQTT_URL      set: use that broker, start no Mosquitto.
#   MAESTRA_PG_PORT (5432), MAESTRA_MQTT_PORT (1883), MAESTRA_MQTT_WS_PORT (9001):
#     preferred ports; a busy one is replaced by the next free port.
#   MAESTRA_SKIP_INSTALL=1 (Debian and npm packages), MAESTRA_SKIP_BUILD=1: skip those steps.
#   MAESTRA_SECURE=true: secure mode (mosquitto/secure.conf with the
#     dynamic-security plugin and TLS on 8883; secrets made once in <state>/secrets.env).
# shellcheck disable=SC2119,SC2317 # build takes optional arguments; trap handlers
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

RUN="$MAESTRA_RUN_DIR"
LOGS="$RUN/logs"
NEED_PG=1
[[ -z "${MAESTRA_DATABASE_URL:-}" ]] || NEED_PG=0

# The HTTP port the service will bind: --http-port on the command line wins.
HTTP_PORT="${MAESTRA_HTTP_PORT:-8080}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --http-port) HTTP_PORT="${args[i + 1]:-$HTTP_PORT}" ;;
    --http-port=*) HTTP_PORT="${args[i]#*=}" ;;
  esac
done

# --- checks before anything slow (one line each when something cannot work) -------------
prepare_run_dir "$RUN" "$NEED_PG"
run_dir_lock "$RUN" # held until this script exits
if [[ "$HTTP_PORT" =~ ^[0-9]+$ ]] && port_in_use "$HTTP_PORT"; then
  holder="$(ss -Hltnp "sport = :$HTTP_PORT" 2>/dev/null | grep -o 'users:(([^)]*' | head -n 1 | sed 's/users:((//' || true)"
  die "port $HTTP_PORT is already in use${holder:+ (by $holder)}: stop that, or pick another port: MAESTRA_HTTP_PORT=8081 ./scripts/run.sh"
fi
log "state folder: $RUN (Postgres data, broker persistence, logs; survives restarts; MAESTRA_RUN_DIR overrides)"

if [[ "${MAESTRA_SKIP_INSTALL:-0}" != 1 ]]; then
  install_dependencies || exit 1 # it said why in one line
  install_dashboard || die "npm ci in examples/dashboard failed (output above): the dashboard at / needs it; fix npm's access to its registry, or start without it: MAESTRA_SKIP_INSTALL=1 ./scripts/run.sh"
  prepare_run_dir "$RUN" "$NEED_PG" # again, now that the postgres user surely exists
elif ! dashboard_installed; then
  log "warning: examples/dashboard/node_modules is missing or older than package-lock.json: the dashboard at / will not load MQTT.js (run npm ci there, or run without MAESTRA_SKIP_INSTALL)"
fi
[[ "${MAESTRA_SKIP_BUILD:-0}" == 1 ]] || build || die "build failed"
BIN="$MAESTRA_BUILD_DIR/fleet-manager"
[[ -x "$BIN" ]] || die "$BIN not found: build first"

mkdir -p "$LOGS"
raise_nofile_limit

PG_DATA="$RUN/postgres"
PG_STARTED=0
PG_SOCK_TMP=""
MOSQUITTO_PIDFILE="$RUN/mosquitto.pid"
SVC_PID=""
WATCHDOG_PID=""

cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$SVC_PID" ]] && kill -0 "$SVC_PID" 2>/dev/null; then
    log "stopping fleet-manager (pid $SVC_PID)"
    stop_pid "$SVC_PID" 20
  fi
  [[ -z "$WATCHDOG_PID" ]] || kill "$WATCHDOG_PID" 2>/dev/null || true
  if [[ -f "$MOSQUITTO_PIDFILE" ]]; then
    log "stopping Mosquitto"
    mosquitto_stop "$MOSQUITTO_PIDFILE"
  fi
  if ((PG_STARTED)); then
    log "stopping Postgres"
    pg_stop_cluster "$PG_DATA"
  fi
  [[ -z "$PG_SOCK_TMP" ]] || rm -rf "$PG_SOCK_TMP"
}

on_signal() {
  if [[ -z "$SVC_PID" ]]; then exit 130; fi # still starting up: the EXIT trap cleans up
  log "stopping fleet-manager (pid $SVC_PID)"
  kill -TERM "$SVC_PID" 2>/dev/null || true
  # Bound the shutdown: a service that ignores SIGTERM is killed after 20 s.
  if [[ -z "$WATCHDOG_PID" ]]; then
    # (Its sleep goes with it when cleanup stops it.)
    (
      trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
      sleep 20 &
      sleeper=$!
      wait "$sleeper"
      kill -KILL "$SVC_PID" 2>/dev/null
    ) 9>&- &
    WATCHDOG_PID=$!
  fi
}
trap cleanup EXIT
trap on_signal INT TERM

# --- secure mode (MAESTRA_SECURE=true) ---------------------------------------------------------
# Secrets are made once and kept in <state>/secrets.env (mode 600): the service's
# dynamic-security admin password, the admin token, the provisioning key and the
# dashboard account's password. A throwaway CA and server certificate for the TLS
# listener are made once in <state>/tls/.
# Device accounts made before accounts were bound to their client id get their
# binding here, in one pass over the plugin's file while the broker is stopped:
# the service binds any it finds at start too, but through the plugin, which
# rewrites its whole file for every account (minutes at a few thousand devices).
bind_device_accounts() {
  local file="$1" unbound
  unbound=$(jq '[.clients[]? | select((.clientid // "") == "" and (. as $c | any(.roles[]?; .rolename == "maestra-device-" + $c.username)))] | length' "$file") ||
    die "cannot read $file (jq failed)"
  [[ "$unbound" -gt 0 ]] || return 0
  jq '.clients |= map(if (.clientid // "") == "" and (. as $c | any(.roles[]?; .rolename == "maestra-device-" + $c.username)) then .clientid = .username else . end)' \
    "$file" >"$file.tmp" && chmod --reference="$file" "$file.tmp" && chown --reference="$file" "$file.tmp" &&
    mv "$file.tmp" "$file" || die "could not bind the device accounts in $file"
  log "secure mode: bound $unbound device broker accounts to their client ids"
}

prepare_secure_mode() {
  local secrets="$RUN/secrets.env"
  if [[ ! -f "$secrets" ]]; then
    umask 077
    {
      echo "MAESTRA_MQTT_USERNAME=maestra-service"
      echo "MAESTRA_MQTT_PASSWORD=$(openssl rand -hex 24)"
      echo "MAESTRA_ADMIN_TOKEN=$(openssl rand -hex 24)"
      echo "MAESTRA_PROVISIONING_KEY=$(openssl rand -hex 24)"
      echo "MAESTRA_DASHBOARD_USERNAME=dashboard"
      echo "MAESTRA_DASHBOARD_PASSWORD=$(openssl rand -hex 24)"
    } >"$secrets"
    umask 022
    log "secure mode: secrets written to $secrets"
  fi
  set -a
  # shellcheck disable=SC1090
  source "$secrets"
  set +a
  if [[ ! -f "$RUN/mosquitto/dynamic-security.json" ]]; then
    mosquitto_ctrl dynsec init "$RUN/mosquitto/dynamic-security.json" "$MAESTRA_MQTT_USERNAME" \
      "$MAESTRA_MQTT_PASSWORD" >/dev/null || die "mosquitto_ctrl dynsec init failed"
  fi
  bind_device_accounts "$RUN/mosquitto/dynamic-security.json"
  if [[ ! -f "$RUN/tls/server.crt" ]]; then
    mkdir -p "$RUN/tls"
    (
      cd "$RUN/tls"
      openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj /CN=maestra-local-ca -keyout ca.key -out ca.crt
      openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:%s\n' "$(hostname)" >san.ext
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -extfile san.ext -out server.crt
    ) >/dev/null 2>&1 || die "could not make the TLS certificates"
    chmod 600 "$RUN/tls/"*.key
  fi
  export MAESTRA_MQTT_CA_FILE="$RUN/tls/ca.crt"
}

# --- Postgres ---------------------------------------------------------------------------
if [[ -n "${MAESTRA_DATABASE_URL:-}" ]]; then
  log "using the given MAESTRA_DATABASE_URL; no private Postgres"
  PG_LINE="Postgres     given by MAESTRA_DATABASE_URL"
else
  PG_PORT="$(first_free_port "${MAESTRA_PG_PORT:-5432}")"
  PG_SOCK="$RUN/pgsock"
  if ((${#PG_SOCK} > 80)); then # unix socket paths are limited to 107 bytes
    PG_SOCK_TMP="$(mktemp -d /tmp/maestra-pgsock.XXXXXX)"
    PG_SOCK="$PG_SOCK_TMP"
  fi
  pg_init_cluster "$PG_DATA"
  pg_start_cluster "$PG_DATA" "$PG_PORT" "$PG_SOCK" "$LOGS/postgres.log"
  PG_STARTED=1
  pg_create_database "$PG_PORT" maestra
  export MAESTRA_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/maestra"
  PG_LINE="Postgres 15  127.0.0.1:$PG_PORT db maestra (data $PG_DATA, log $LOGS/postgres.log)"
fi

# --- Mosquitto ------------------------------------------------------------------------------
if [[ -n "${MAESTRA_MQTT_URL:-}" ]]; then
  log "using the given MAESTRA_MQTT_URL; no private Mosquitto"
  MQTT_LINE="Mosquitto    given by MAESTRA_MQTT_URL"
else
  mosquitto_stop "$MOSQUITTO_PIDFILE" # one left running by an earlier run that was killed
  MQTT_PORT="$(first_free_port "${MAESTRA_MQTT_PORT:-1883}")"
  WS_PORT="$(first_free_port "${MAESTRA_MQTT_WS_PORT:-9001}")"
  [[ "$WS_PORT" != "$MQTT_PORT" ]] || WS_PORT="$(first_free_port $((MQTT_PORT + 1)))"
  [[ "$MQTT_PORT" == "${MAESTRA_MQTT_PORT:-1883}" ]] || log "warning: MQTT port ${MAESTRA_MQTT_PORT:-1883} is busy, using $MQTT_PORT"
  [[ "$WS_PORT" == "${MAESTRA_MQTT_WS_PORT:-9001}" ]] || log "warning: websockets port ${MAESTRA_MQTT_WS_PORT:-9001} is busy, using $WS_PORT"
  mkdir -p "$RUN/mosquitto"
  if [[ "${MAESTRA_SECURE:-false}" == true ]]; then
    prepare_secure_mode
    TLS_PORT="$(first_free_port "${MAESTRA_MQTT_TLS_PORT:-8883}")"
    mosquitto_render_conf "$MAESTRA_REPO/mosquitto/secure.conf" "$RUN/mosquitto.conf" \
      "$MQTT_PORT" "$WS_PORT" "$RUN/mosquitto" "$LOGS/mosquitto.log"
    sed -i -e "s|^listener 8883\$|listener $TLS_PORT $MAESTRA_BIND_ADDRESS|" \
      -e "s|^plugin_opt_config_file .*|plugin_opt_config_file $RUN/mosquitto/dynamic-security.json|" \
      -e "s|\.run/tls/|$RUN/tls/|" "$RUN/mosquitto.conf"
  else
    mosquitto_render_conf "$MAESTRA_REPO/mosquitto/mosquitto.conf" "$RUN/mosquitto.conf" \
      "$MQTT_PORT" "$WS_PORT" "$RUN/mosquitto" "$LOGS/mosquitto.log"
  fi
  mosquitto_start "$RUN/mosquitto.conf" "$MQTT_PORT" "$LOGS/mosquitto.log" "$MOSQUITTO_PIDFILE" ||
    die "Mosquitto did not start (see ${LOGS}/mosquitto.log)"
  export MAESTRA_MQTT_URL="tcp://127.0.0.1:$MQTT_PORT"
  MQTT_LINE="Mosquitto    mqtt://127.0.0.1:$MQTT_PORT  ws://127.0.0.1:$WS_PORT (persistence $RUN/mosquitto, log $LOGS/mosquitto.log)"
  if [[ "${MAESTRA_SECURE:-false}" == true ]]; then
    MQTT_LINE="$MQTT_LINE
  secure mode  TLS mqtts://127.0.0.1:$TLS_PORT (CA $RUN/tls/ca.crt); secrets in $RUN/secrets.env"
  fi
fi

# --- the service ----------------------------------------------------------------------------
export MAESTRA_HTTP_PORT="${MAESTRA_HTTP_PORT:-8080}"
export MAESTRA_HTTP_HOST="${MAESTRA_HTTP_HOST:-$MAESTRA_BIND_ADDRESS}"
DASHBOARD_URL="http://127.0.0.1:$HTTP_PORT/"
# The page connects to ws://<its host>:9001 unless told otherwise.
[[ -z "${WS_PORT:-}" || "$WS_PORT" == 9001 ]] || DASHBOARD_URL="${DASHBOARD_URL}?broker=ws://127.0.0.1:$WS_PORT"
cat >&2 <<EOF
[maestra] started:
  state folder $RUN
  $PG_LINE
  $MQTT_LINE
  fleet-manager http://$MAESTRA_HTTP_HOST:$HTTP_PORT (log $LOGS/fleet-manager.log, also shown below)
  dashboard    $DASHBOARD_URL
  MAESTRA_DATABASE_URL=$MAESTRA_DATABASE_URL
  MAESTRA_MQTT_URL=$MAESTRA_MQTT_URL
[maestra] Ctrl-C stops everything.
EOF

printf '\n=== %s fleet-manager %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOGS/fleet-manager.log"
# The run lock's fd 9 is closed for the service and its log's tee.
"$BIN" "$@" 9>&- > >(tee -ai "$LOGS/fleet-manager.log" 9>&-) 2>&1 &
SVC_PID=$!

set +e
wait "$SVC_PID"
status=$?
# `wait` also returns when a trapped signal arrives: keep waiting until the
# service has really exited (the watchdog bounds it).
while kill -0 "$SVC_PID" 2>/dev/null; do
  wait "$SVC_PID"
  status=$?
done
set -e
log "fleet-manager exited with status $status"
exit "$status"
