# scripts/lib.sh — shared shell helpers of the tooling (owned by the tooling,
# sourced by scripts/run.sh and scripts/test.sh, not executed on its own):
# Debian package install, the CMake build, a private Postgres 15 cluster and a
# private Mosquitto broker, all on loopback.
# shellcheck shell=bash

# Every Debian package the project needs to build, run and test. One list, one
# place: install_dependencies installs only those that are missing.
MAESTRA_DEBIAN_PACKAGES="build-essential cmake pkg-config
  libpaho-mqttpp-dev libpaho-mqtt-dev libcpp-httplib-dev libpqxx-dev
  nlohmann-json3-dev doctest-dev libssl-dev
  postgresql postgresql-contrib mosquitto mosquitto-clients
  python3 python3-pytest python3-requests python3-paho-mqtt
  wrk curl jq nodejs npm chromium gnuplot docker-compose python3-yaml"

MAESTRA_REPO="${MAESTRA_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MAESTRA_BUILD_DIR="${MAESTRA_BUILD_DIR:-$MAESTRA_REPO/build}"
MAESTRA_RUN_DIR="${MAESTRA_RUN_DIR:-$MAESTRA_REPO/.run}"
MAESTRA_BIND_ADDRESS="${MAESTRA_BIND_ADDRESS:-127.0.0.1}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf '[maestra] %s\n' "$*" >&2; }
die() { printf '[maestra] error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if is_root; then "$@"; else sudo "$@"; fi
}

# --- Debian packages ------------------------------------------------------------------

# True when the Debian package is installed. npm is special: NodeSource's nodejs
# (what these machines ship) bundles npm, and Debian's separate npm package
# would drag in hundreds of node-* packages built for Debian's older Node.
package_present() {
  local status
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)"
  [[ "$status" == ii* ]] && return 0
  if [[ "$1" == npm ]] && command -v npm >/dev/null 2>&1; then return 0; fi
  return 1
}

install_dependencies() {
  local pkg missing=()
  for pkg in $MAESTRA_DEBIAN_PACKAGES; do
    package_present "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    log "all Debian packages present"
    return 0
  fi
  log "installing missing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y --no-install-recommends "${missing[@]}"
}

# --- build ------------------------------------------------------------------------------

# Configure (RelWithDebInfo unless CMAKE_BUILD_TYPE says otherwise) and build
# everything into build/. Extra arguments go to the CMake configure step.
build() {
  local jobs="${MAESTRA_BUILD_JOBS:-$(nproc)}"
  cmake -S "$MAESTRA_REPO" -B "$MAESTRA_BUILD_DIR" \
    -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" "$@" || return 1
  cmake --build "$MAESTRA_BUILD_DIR" -j "$jobs"
}

# --- processes and ports ------------------------------------------------------------------

# Raise the open-files limit of this shell (inherited by everything it starts):
# to 65536 when allowed, else to the hard limit. A broker or a service with one
# socket per device runs out at the usual 1024.
raise_nofile_limit() {
  local want=65536 hard
  ulimit -n "$want" 2>/dev/null && return 0
  hard="$(ulimit -Hn)"
  if [[ "$hard" == unlimited ]] || ((hard >= want)); then
    ulimit -Sn "$want" 2>/dev/null || true
  else
    ulimit -Sn "$hard" 2>/dev/null || true
  fi
}

# True when something accepts TCP connections on 127.0.0.1:PORT (or the port is
# bound on any address).
port_in_use() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# Print PORT if free, else the first free port after it.
first_free_port() {
  local port="$1" limit=$(($1 + 200))
  while port_in_use "$port"; do
    port=$((port + 1))
    ((port < limit)) || die "no free port between $1 and $limit"
  done
  echo "$port"
}

# Wait (bounded) until 127.0.0.1:PORT accepts connections. Optional PID: give up
# as soon as that process has exited.
wait_for_port() {
  local port="$1" timeout="${2:-20}" pid="${3:-}" deadline
  deadline=$((SECONDS + timeout))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Send SIGNAL (default TERM) to PID and wait up to TIMEOUT seconds for it to go,
# then SIGKILL. Works for processes that are not our children.
stop_pid() {
  local pid="$1" timeout="${2:-15}" sig="${3:-TERM}" deadline
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -s "$sig" "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    # A zombie child counts as gone once reaped; reap it if it is ours.
    if [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == Z* ]]; then wait "$pid" 2>/dev/null; break; fi
    if ((SECONDS >= deadline)); then
      log "pid $pid did not stop within ${timeout}s, killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

# --- Postgres: a private cluster ------------------------------------------------------------
# As root, initdb/pg_ctl/postgres refuse to run, so they run as the `postgres`
# user and everything they write (data, socket folder, log file) is owned by it.

pg_run() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Make PATH (a folder, or a file with `file`) writable by the Postgres user.
pg_own() {
  if is_root; then chown postgres:postgres "$@"; fi
}

# pg_init_cluster DATA_DIR: initdb unless the folder already holds a cluster
# (so data survives a restart). Superuser `postgres`, trust auth, UTF-8.
pg_init_cluster() {
  local data="$1"
  if [[ -f "$data/PG_VERSION" ]]; then
    pg_own -R "$data"
    return 0
  fi
  mkdir -p "$data"
  chmod 700 "$data"
  pg_own "$data"
  log "initdb $data"
  pg_run "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
}

# pg_start_cluster DATA_DIR PORT SOCKET_DIR LOG_FILE [EXTRA_POSTGRES_OPTIONS]
# Listens on 127.0.0.1:PORT only, unix socket in SOCKET_DIR. A postmaster left
# running on this data folder by an earlier run is stopped first.
pg_start_cluster() {
  local data="$1" port="$2" sockdir="$3" logfile="$4" extra="${5:-}"
  mkdir -p "$sockdir" "$(dirname "$logfile")"
  touch "$logfile"
  pg_own "$sockdir" "$logfile"
  if pg_run "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping a Postgres left running on $data"
    pg_stop_cluster "$data"
  fi
  pg_run "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -w -t 60 \
    -o "-p $port -c listen_addresses=$MAESTRA_BIND_ADDRESS -k '$sockdir' $extra" start >/dev/null ||
    { tail -n 20 "$logfile" >&2; return 1; }
}

pg_stop_cluster() {
  local data="$1"
  [[ -f "$data/postmaster.pid" ]] || return 0
  pg_run "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
    pg_run "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
}

# pg_create_database PORT NAME: create the database unless it exists.
pg_create_database() {
  local port="$1" name="$2" psql=("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$1" -U postgres -d postgres)
  if [[ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

# --- Mosquitto: a private broker ---------------------------------------------------------------

# mosquitto_render_conf TEMPLATE OUT TCP_PORT WS_PORT PERSIST_DIR LOG_FILE
# Writes a copy of mosquitto/mosquitto.conf with the listeners bound to
# $MAESTRA_BIND_ADDRESS on the given ports, persistence in PERSIST_DIR and the
# log in LOG_FILE. As root, Mosquitto would drop privileges to the `mosquitto`
# user and could no longer write the persistence folder: `user root` keeps it.
mosquitto_render_conf() {
  local template="$1" out="$2" tcp="$3" ws="$4" persist="$5" logfile="$6"
  sed -e "s|^listener 1883\$|listener $tcp $MAESTRA_BIND_ADDRESS|" \
      -e "s|^listener 9001\$|listener $ws $MAESTRA_BIND_ADDRESS|" \
      -e "s|^persistence_location .*|persistence_location $persist|" \
      -e "s|^log_dest stdout\$|log_dest file $logfile|" \
      "$template" >"$out"
  if ! grep -q "^listener $tcp " "$out" || ! grep -q "^listener $ws " "$out"; then
    die "$template: expected the lines 'listener 1883' and 'listener 9001'"
  fi
  if is_root; then printf '\n# added by scripts/lib.sh: running as root\nuser root\n' >>"$out"; fi
}

# mosquitto_start CONF TCP_PORT LOG_FILE PID_FILE: start the broker in its own
# session (so a Ctrl-C meant for the service does not hit it first), wait until
# it accepts connections, and set MAESTRA_MOSQUITTO_PID.
mosquitto_start() {
  local conf="$1" port="$2" logfile="$3" pidfile="$4"
  mkdir -p "$(dirname "$logfile")"
  setsid mosquitto -c "$conf" >>"$logfile" 2>&1 </dev/null &
  MAESTRA_MOSQUITTO_PID=$!
  echo "$MAESTRA_MOSQUITTO_PID" >"$pidfile"
  if ! wait_for_port "$port" 20 "$MAESTRA_MOSQUITTO_PID"; then
    tail -n 20 "$logfile" >&2
    stop_pid "$MAESTRA_MOSQUITTO_PID" 5
    rm -f "$pidfile"
    return 1
  fi
}

# mosquitto_stop PID_FILE: SIGTERM (the broker saves its persistence database),
# bounded wait, then SIGKILL.
mosquitto_stop() {
  local pidfile="$1" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if [[ -n "$pid" ]] && [[ "$(ps -o comm= -p "$pid" 2>/dev/null)" == mosquitto ]]; then
    stop_pid "$pid" 15
  fi
  rm -f "$pidfile"
}
