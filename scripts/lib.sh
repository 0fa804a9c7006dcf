# scripts/lib.sh — shared shell helpers of the tooling (owned by the tooling,
# sourced by scripts/run.sh, scripts/test.sh and scripts/bench.sh, not executed on
# its own): Debian package install, the dashboard's npm packages, the CMake build,
# run.sh's state folder and its checks, a private Postgres 15 cluster and a
# private Mosquitto broker, all on loopback.
# shellcheck shell=bash

# Every Debian package the project needs to build, run and test. One list, one
# place: install_dependencies installs only those that are missing.
MAESTRA_DEBIAN_PACKAGES="build-essential cmake pkg-config
  libpaho-mqttpp-dev libpaho-mqtt-dev libcpp-httplib-dev libpqxx-dev
  nlohmann-json3-dev doctest-dev libssl-dev
  postgresql postgresql-contrib mosquitto mosquitto-clients
  python3 python3-pytest python3-requests python3-paho-mqtt
  python3-jsonschema openapi-specification
  wrk curl jq nodejs npm chromium gnuplot docker-compose python3-yaml
  clang libclang-rt-dev llvm"

# mosquitto, runuser and friends live in /usr/sbin, which a normal user's PATH
# often lacks.
case ":$PATH:" in
  *:/usr/sbin:*) ;;
  *) PATH="$PATH:/usr/sbin:/sbin" ;;
esac

MAESTRA_REPO="${MAESTRA_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MAESTRA_BUILD_DIR="${MAESTRA_BUILD_DIR:-$MAESTRA_REPO/build}"
MAESTRA_BIND_ADDRESS="${MAESTRA_BIND_ADDRESS:-127.0.0.1}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf '[maestra] %s\n' "$*" >&2; }
die() { printf '[maestra] error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if is_root; then "$@"; else sudo "$@"; fi
}

# require_root_for WHAT: succeed when we are root or sudo works (asking for the
# password when there is a terminal); otherwise say why in one line and fail.
require_root_for() {
  local why
  is_root && return 0
  if ! command -v sudo >/dev/null 2>&1; then
    why="sudo is not installed: run this as root, or have root install sudo"
  elif sudo -n true 2>/dev/null; then
    return 0
  elif [[ ! -t 0 ]]; then
    why="sudo asks for a password and there is no terminal: run it once from a terminal, or as root"
  else
    log "$1 needs root: sudo may ask for your password"
    sudo -v && return 0
    why="sudo refused (is $(id -un) in the sudo group?)"
  fi
  printf '[maestra] error: %s needs root, and %s\n' "$1" "$why" >&2
  return 1
}

# --- run.sh's state folder ---------------------------------------------------------------
# scripts/run.sh keeps its Postgres cluster, broker persistence, secrets and logs
# in one folder per clone, which must survive a restart and which Postgres (run
# as the `postgres` user when we are root) must be able to enter. A clone often
# sits in a mode-700 home (/root/maestra), so the folder is not inside the clone:
#   root:        /var/lib/maestra/<clone folder name>-<8 hex of the clone's path>
#   other users: ${XDG_STATE_HOME:-~/.local/state}/maestra/<same> (Postgres runs as
#                that user, so a private home is fine)
# A clone that already has a cluster in .run/ (the old place) keeps using it.
# MAESTRA_RUN_DIR overrides all of this.

# The first folder on the way to PATH (PATH included) that a user other than
# its owner and group cannot enter (no x bit for others), or nothing. Used as
# root, where Postgres runs as `postgres`, before that user may even exist.
first_closed_folder() {
  local path="$1" part="" perms p
  local -a parts
  IFS=/ read -r -a parts <<<"${path#/}"
  for p in "${parts[@]}"; do
    [[ -n "$p" ]] || continue
    part="$part/$p"
    [[ -d "$part" ]] || break
    perms="$(stat -L -c %A "$part")"
    if [[ "${perms:9:1}" != x && "${perms:9:1}" != t ]]; then
      # Owned by postgres (a cluster folder from an earlier run) is fine.
      [[ "$(stat -L -c %U "$part")" == postgres ]] || { echo "$part"; return 0; }
    fi
  done
}

default_run_dir() {
  local real name hash
  real="$(cd "$MAESTRA_REPO" && pwd -P)"
  if [[ -f "$real/.run/postgres/PG_VERSION" ]] && { ! is_root || [[ -z "$(first_closed_folder "$real/.run")" ]]; }; then
    echo "$real/.run"
    return 0
  fi
  name="${real##*/}"
  name="${name//[^A-Za-z0-9._-]/_}"
  hash="$(printf '%s' "$real" | sha256sum | cut -c1-8)"
  if is_root; then
    echo "/var/lib/maestra/$name-$hash"
  else
    echo "${XDG_STATE_HOME:-${HOME:-/nonexistent}/.local/state}/maestra/$name-$hash"
  fi
}
MAESTRA_RUN_DIR="${MAESTRA_RUN_DIR:-$(default_run_dir)}"

# prepare_run_dir DIR NEED_POSTGRES: create the state folder and check, before
# anything slow happens, that what will run there can use it. Stops with one
# line when it cannot.
prepare_run_dir() {
  local dir="$1" need_pg="$2" closed
  [[ "$dir" == /* ]] || die "MAESTRA_RUN_DIR must be an absolute path (got '$dir')"
  if [[ "$dir" == /var/lib/maestra/* ]] && ! is_root; then
    require_root_for "creating the state folder $dir" || exit 1
    { as_root mkdir -p "$dir" && as_root chown "$(id -u):$(id -g)" "$dir"; } ||
      die "cannot create the state folder $dir"
  fi
  if is_root && [[ "$dir" == /var/lib/maestra/* ]]; then
    [[ -d /var/lib/maestra ]] || mkdir -m 755 /var/lib/maestra || die "cannot create /var/lib/maestra"
  fi
  mkdir -p "$dir" 2>/dev/null || die "cannot create the state folder $dir (set MAESTRA_RUN_DIR to a folder you can write)"
  [[ -w "$dir" ]] || die "the state folder $dir is not writable by $(id -un) (set MAESTRA_RUN_DIR to another folder)"
  if is_root && ((need_pg)); then
    chmod o+x "$dir" 2>/dev/null || true
    closed="$(first_closed_folder "$dir")"
    [[ -z "$closed" ]] || die "Postgres runs as the postgres user, which cannot enter $closed ($(stat -c %A "$closed")), so it cannot use the state folder $dir: unset MAESTRA_RUN_DIR (default /var/lib/maestra/...) or pick a folder outside $closed"
    if id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
      die "the postgres user cannot enter the state folder $dir (ACL, mount option?): set MAESTRA_RUN_DIR to a folder under /var/lib or /tmp"
    fi
  fi
}

# run_dir_lock DIR: hold DIR/run.lock (flock) for the life of this shell, so one
# run.sh runs per state folder; a second one stops at once with the first's pid.
# The lock is on fd 9: long-lived children (Postgres, Mosquitto, fleet-manager)
# are started with fd 9 closed, so a process left behind never holds the lock.
run_dir_lock() {
  local lock="$1/run.lock" other
  exec 9<>"$lock" || die "cannot open $lock"
  if ! flock -n 9; then
    other="$(head -n 1 "$lock" 2>/dev/null)"
    die "scripts/run.sh is already running for this clone (pid ${other:-unknown}, state folder $1): stop it (Ctrl-C there, or kill -TERM ${other:-<pid>}) or use another MAESTRA_RUN_DIR"
  fi
  printf '%s\n' "$$" >"$lock"
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
  require_root_for "installing ${#missing[@]} missing Debian packages (${missing[*]})" || return 1
  log "installing missing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y --no-install-recommends "${missing[@]}" && return 0
  printf '[maestra] error: apt-get could not install %s (its output is above)\n' "${missing[*]}" >&2
  return 1
}

# --- the dashboard's npm packages ----------------------------------------------------------

# install_dashboard: `npm ci` in examples/dashboard (MQTT.js, which the page loads
# from node_modules/, and playwright-core for the browser test) from the committed
# lock file, when node_modules is missing or older than package-lock.json. npm
# writes node_modules/.package-lock.json on every install, so its age says when
# the last install was.
dashboard_installed() {
  local dir="$MAESTRA_REPO/examples/dashboard"
  [[ -f "$dir/node_modules/mqtt/dist/mqtt.min.js" && -f "$dir/node_modules/.package-lock.json" &&
     ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]
}
install_dashboard() {
  local dir="$MAESTRA_REPO/examples/dashboard"
  [[ -f "$dir/package-lock.json" ]] || return 0
  dashboard_installed && return 0
  command -v npm >/dev/null 2>&1 || { log "npm is missing (Debian package nodejs/npm)"; return 1; }
  log "npm ci in examples/dashboard (MQTT.js for the dashboard, from package-lock.json)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error 9>&-) >&2 || return 1
  dashboard_installed || { log "npm ci ran, but node_modules/mqtt/dist/mqtt.min.js is missing"; return 1; }
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

# From /, so that a current folder the postgres user cannot enter (a clone in a
# mode-700 home) does not make initdb and pg_ctl complain.
pg_run() {
  if is_root; then (cd / && runuser -u postgres -- "$@" 9>&-); else "$@" 9>&-; fi
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
  setsid mosquitto -c "$conf" >>"$logfile" 2>&1 </dev/null 9>&- &
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
