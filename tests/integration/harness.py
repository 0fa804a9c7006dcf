"""tests/integration/harness.py — the integration-test harness (owned by the
tooling): a throwaway Postgres 15 cluster, throwaway Mosquitto brokers, the
fleet-manager process under test, an MQTT test client on paho-mqtt 1.6.1, and
small helpers (free_port, wait_until, psql). conftest.py turns these into pytest
fixtures; tests may import them directly (`from harness import wait_until`).

Runs with Debian's /usr/bin/python3 (python3-pytest, python3-requests,
python3-paho-mqtt 1.6.1). Everything listens on 127.0.0.1 only, and every wait
is bounded in time.
"""
from __future__ import annotations

import csv
import io
import json
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import paho.mqtt.client as paho
import requests
import urllib3
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
REPO = Path(os.environ.get("MAESTRA_REPO") or Path(__file__).resolve().parents[2])
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
MOSQUITTO_CONF = REPO / "mosquitto" / "mosquitto.conf"
IS_ROOT = os.geteuid() == 0


def fleet_manager_binary() -> Path:
    """The binary under test: $FLEET_MANAGER_BIN (set by CTest), else build/fleet-manager."""
    return Path(os.environ.get("FLEET_MANAGER_BIN") or REPO / "build" / "fleet-manager")


# --- small helpers -----------------------------------------------------------------------


class WaitTimeout(AssertionError):
    """A bounded wait ran out of time (an AssertionError, so pytest reports it plainly)."""


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call predicate until it returns something truthy and return that value.

    Raises WaitTimeout after `timeout` seconds. Exceptions of the types in
    `ignore` count as "not yet" (e.g. ignore=(requests.ConnectionError,));
    others propagate at once. `message` (text, or a function returning text, for
    instance a log tail) is added to the failure.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignore as exc:  # noqa: PERF203 - retried until the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f"; last error: {last_error!r}" if last_error else ""
            raise WaitTimeout(
                f"condition not met within {timeout:g}s{detail}" + (f"\n{text}" if text else "")
            )
        time.sleep(interval)


_handed_out_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel's choice) and that this
    process has not handed out before."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise RuntimeError("no free port found")


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when host:port accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def raise_nofile_limit(want: int = 65536) -> int:
    """Raise this process's open-files limit (inherited by what it starts) to
    `want`, or to the hard limit when that is lower. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a text file ('' when it does not exist)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stop_process(proc: subprocess.Popen, sig: int, timeout: float) -> int | None:
    """Send sig, wait up to timeout, then SIGKILL. Returns the exit status."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


# --- Postgres ------------------------------------------------------------------------------


class PsqlError(RuntimeError):
    pass


NULL_MARK = "\\N"  # how psql_rows shows SQL NULL before turning it into None


def psql_rows(database_url: str, sql: str, timeout: float = 30.0) -> list[list[str | None]]:
    """Run SQL (one or more statements) with the Postgres 15 psql client and return
    every row printed, as lists of strings (None for NULL). Raises PsqlError."""
    result = subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-q", "-t", "--csv", "-v", "ON_ERROR_STOP=1",
         "-P", f"null={NULL_MARK}", "-d", database_url, "-f", "-"],
        input=sql, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise PsqlError(f"psql failed ({result.returncode}) on {sql!r}:\n{result.stderr.strip()}")
    rows = csv.reader(io.StringIO(result.stdout))
    return [[None if cell == NULL_MARK else cell for cell in row] for row in rows if row]


def psql(database_url: str, sql: str, timeout: float = 30.0) -> list[list[str | None]]:
    """Alias of psql_rows: psql(url, "SELECT ...") -> [[col, ...], ...]."""
    return psql_rows(database_url, sql, timeout)


def psql_value(database_url: str, sql: str, timeout: float = 30.0) -> str | None:
    """First column of the first row (None when there is no row)."""
    rows = psql_rows(database_url, sql, timeout)
    return rows[0][0] if rows and rows[0] else None


class PostgresCluster:
    """A throwaway Postgres 15 cluster: initdb into a temp folder, postgres on
    127.0.0.1:<free port>, trust auth, superuser `postgres`, fsync off.

    As root, initdb/pg_ctl/postgres refuse to run, so they run as the `postgres`
    user (runuser) and the folder belongs to it; it lives under /tmp (or
    $MAESTRA_PG_TMPDIR), not under a root-only temp folder the postgres user
    could not enter.
    """

    def __init__(self, base_dir: Path | None = None, port: int | None = None):
        parent = os.environ.get("MAESTRA_PG_TMPDIR", "/tmp")
        self.base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="maestra-pg-", dir=parent))
        self.base.mkdir(parents=True, exist_ok=True)
        self.data = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log_path = self.base / "postgres.log"
        self.port = port or free_port()
        self.host = HOST
        self._owns_base = base_dir is None

    def _run(self, argv: list[str], timeout: float = 90.0) -> subprocess.CompletedProcess:
        if IS_ROOT:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def _chown(self, path: Path) -> None:
        if IS_ROOT:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self) -> "PostgresCluster":
        self.socket_dir.mkdir(exist_ok=True)
        for path in (self.base, self.socket_dir):
            self._chown(path)
        if not (self.data / "PG_VERSION").exists():
            r = self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                           "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        options = (f"-p {self.port} -c listen_addresses={HOST} -k {self.socket_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=300")
        r = self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
                       "-w", "-t", "60", "-o", options, "start"])
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{tail(self.log_path)}")
        return self

    def is_running(self) -> bool:
        return self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        r = self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])
        if r.returncode != 0 and mode != "immediate":
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop"])

    def cleanup(self) -> None:
        """Stop the cluster and delete its folder (unless MAESTRA_KEEP_TMP=1)."""
        self.stop()
        if self._owns_base and os.environ.get("MAESTRA_KEEP_TMP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def new_database(self, prefix: str = "maestra") -> str:
        """CREATE DATABASE <prefix>_<random> and return its URL."""
        name = f"{prefix}_{secrets.token_hex(5)}"
        psql_rows(self.url(), f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, database_url: str) -> None:
        name = database_url.rsplit("/", 1)[1]
        psql_rows(self.url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Mosquitto -----------------------------------------------------------------------------


def render_mosquitto_conf(template: str, *, port: int, ws_port: int, persistence_dir: Path,
                          log_path: Path, bind: str = HOST) -> str:
    """mosquitto/mosquitto.conf with the listeners on bind:port / bind:ws_port, the
    persistence in persistence_dir and the log in log_path (as scripts/lib.sh does).
    As root, `user root` keeps the broker from dropping to the mosquitto user,
    which could not write a root-owned temp folder."""
    replacements = {
        "tcp": (lambda l: l == "listener 1883", f"listener {port} {bind}"),
        "ws": (lambda l: l == "listener 9001", f"listener {ws_port} {bind}"),
        "persistence": (lambda l: l.startswith("persistence_location "), f"persistence_location {persistence_dir}"),
        "log": (lambda l: l == "log_dest stdout", f"log_dest file {log_path}"),
    }
    out, seen = [], set()
    for line in template.splitlines():
        for key, (matches, replacement) in replacements.items():
            if matches(line.strip()):
                line = replacement
                seen.add(key)
                break
        out.append(line)
    missing = {"tcp", "ws", "persistence", "log"} - seen
    if missing:
        raise ValueError(f"mosquitto.conf template lacks the lines for {sorted(missing)}")
    if IS_ROOT:
        out += ["", "# added by the test harness: running as root", "user root"]
    return "\n".join(out) + "\n"


class MosquittoBroker:
    """A throwaway Mosquitto broker from mosquitto/mosquitto.conf on free ports
    (TCP `.port`, websockets `.ws_port`, both on 127.0.0.1) with its persistence
    in `workdir`. stop()/start() keep the ports and the persistence, so a restart
    brings back retained messages and persistent sessions."""

    def __init__(self, workdir: Path, port: int | None = None, ws_port: int | None = None,
                 template: Path = MOSQUITTO_CONF):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.persistence_dir = self.dir / "persistence"
        self.persistence_dir.mkdir(exist_ok=True)
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.template = Path(template)
        self.host = HOST
        self.port = port or free_port()
        self.ws_port = ws_port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """For MAESTRA_MQTT_URL."""
        return f"tcp://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> "MosquittoBroker":
        if self.is_running():
            return self
        self.conf_path.write_text(render_mosquitto_conf(
            self.template.read_text(), port=self.port, ws_port=self.ws_port,
            persistence_dir=self.persistence_dir, log_path=self.log_path))
        with open(self.log_path, "ab") as log:
            log.write(f"=== harness: starting mosquitto on {self.port}/{self.ws_port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", str(self.conf_path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {proc.returncode}:\n{self.log_tail()}")
            return port_open(self.port) and port_open(self.ws_port)

        wait_until(ready, timeout=timeout, interval=0.05,
                   message=lambda: f"mosquitto did not listen on {self.port}/{self.ws_port}:\n{self.log_tail()}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the broker: SIGTERM saves the persistence database first; SIGKILL
        (see kill()) loses what was not autosaved. Bounded, then SIGKILL."""
        if self.proc is None:
            return None
        status = _stop_process(self.proc, sig, timeout)
        return status

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL)

    def restart(self, timeout: float = 15.0) -> "MosquittoBroker":
        self.stop()
        return self.start(timeout=timeout)

    def ensure_running(self) -> "MosquittoBroker":
        return self if self.is_running() else self.start()

    def save(self) -> None:
        """Ask the broker to write its persistence database now (SIGUSR1)."""
        if self.is_running():
            self.proc.send_signal(signal.SIGUSR1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


# --- MQTT test client -------------------------------------------------------------------------


def _protocol(protocol: Any) -> int:
    if protocol in (5, "5", "v5", "5.0", paho.MQTTv5):
        return paho.MQTTv5
    if protocol in (311, "311", "3.1.1", "v311", 4, paho.MQTTv311):
        return paho.MQTTv311
    raise ValueError(f"unknown MQTT protocol {protocol!r} (use 5 or 311)")


class MqttClient:
    """A paho-mqtt 1.6.1 client running its network loop in a thread, recording
    every message it receives. Unknown attributes fall through to the paho
    client (`.client`), e.g. `c.unsubscribe(...)`."""

    def __init__(self, client: paho.Client, protocol: int, client_id: str):
        self.client = client
        self.protocol = protocol
        self.client_id = client_id
        self.messages: list[paho.MQTTMessage] = []
        self.connacks: list[tuple[dict, Any]] = []  # (flags, reason code) of every CONNACK
        self.disconnects: list[Any] = []  # reason codes of every disconnect
        self._cond = threading.Condition()
        self._suback: dict[int, Any] = {}
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

    # paho calls these on its network thread
    def _on_connect(self, _client, _userdata, flags, rc, *_props):
        with self._cond:
            self.connacks.append((flags, rc))
            self._cond.notify_all()

    def _on_disconnect(self, _client, _userdata, rc, *_props):
        with self._cond:
            self.disconnects.append(rc)
            self._cond.notify_all()

    def _on_message(self, _client, _userdata, message):
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, granted, *_props):
        with self._cond:
            self._suback[mid] = granted
            self._cond.notify_all()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def _wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = check()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(f"MQTT client {self.client_id}: {what} within {timeout:g}s")
                self._cond.wait(remaining)

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def wait_connected(self, count: int = 1, timeout: float = 10.0) -> tuple[dict, Any]:
        """Wait until `count` successful CONNACKs in all (count=2: reconnected once)."""
        def check():
            ok = [c for c in self.connacks if c[1] == 0]
            return ok[count - 1] if len(ok) >= count else None
        return self._wait(check, timeout, f"connection #{count}")

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10.0, **kwargs) -> Any:
        """Subscribe and wait for the SUBACK; returns the granted QoS / reason codes."""
        result, mid = self.client.subscribe(topic, qos, **kwargs)
        if result != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"subscribe {topic!r} failed: {paho.error_string(result)}")
        granted = self._wait(lambda: mid in self._suback and (self._suback[mid],), timeout,
                             f"SUBACK for {topic!r}")[0]
        codes = [getattr(g, "value", g) for g in granted]
        if any(c >= 0x80 for c in codes):
            raise RuntimeError(f"subscribe {topic!r} refused: {granted}")
        return granted

    def publish(self, topic: str, payload: Any = None, qos: int = 1, retain: bool = False,
                properties: Properties | None = None, timeout: float = 10.0) -> paho.MQTTMessageInfo:
        """Publish; for QoS 1/2 wait until the broker acknowledged it. dict/list
        payloads are sent as JSON."""
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        if qos > 0:
            info.wait_for_publish(timeout=timeout)
            if not info.is_published():
                raise WaitTimeout(f"MQTT client {self.client_id}: no ack for {topic!r} within {timeout:g}s")
        return info

    def received(self, topic: str | None = None) -> list[paho.MQTTMessage]:
        """Messages received so far, optionally only those matching a topic filter."""
        with self._cond:
            return [m for m in self.messages if topic is None or paho.topic_matches_sub(topic, m.topic)]

    def wait_for(self, topic: str | None = None, predicate: Callable[[paho.MQTTMessage], bool] | None = None,
                 timeout: float = 10.0, start: int = 0) -> paho.MQTTMessage:
        """The first message (from index `start` of .messages on) matching the topic
        filter (wildcards allowed) and predicate; waits for it, bounded."""
        def check():
            for m in self.messages[start:]:
                if (topic is None or paho.topic_matches_sub(topic, m.topic)) and (predicate is None or predicate(m)):
                    return m
            return None
        return self._wait(check, timeout, f"message on {topic or '#'}")

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def disconnect(self, timeout: float = 5.0) -> None:
        """A clean DISCONNECT (the broker discards the will), then stop the loop."""
        if self.client.is_connected():
            self.client.disconnect()
            try:
                self._wait(lambda: not self.client.is_connected(), timeout, "disconnect")
            except WaitTimeout:
                pass
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without a DISCONNECT (like a device losing power): stop the loop
        and close the socket, so the broker publishes the will (after the keepalive
        at the latest; at once here since the TCP connection closes)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # plain TCP; the websockets wrapper has none
            except (OSError, AttributeError):
                pass
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.disconnect(timeout=2.0)
        except Exception:  # noqa: BLE001 - teardown must go on
            self.client.loop_stop()


def mqtt_client(broker: Any = None, client_id: str | None = None, *, protocol: Any = 5,
                clean: bool = True, keepalive: int = 30, will: Any = None,
                session_expiry: int | None = None, transport: str = "tcp",
                host: str = HOST, port: int | None = None, properties: Properties | None = None,
                subscribe: Iterable[str] | str | None = None, timeout: float = 10.0) -> MqttClient:
    """Connect a test client and run its loop (loop_start); returns an MqttClient.

    broker: a MosquittoBroker (or anything with .port/.ws_port), or None with port=.
    protocol: 5 (default) or 311. clean: clean start (v5) / clean session (3.1.1).
    will: (topic, payload, qos, retain) or a dict of will_set keyword arguments.
    session_expiry: v5 Session Expiry Interval in seconds (persistent session).
    transport: "tcp" or "websockets" (then the broker's ws_port is used).
    subscribe: topic filter(s) subscribed at QoS 1 before returning.
    Auto-reconnects (0.2-2 s backoff) when the broker goes away.
    """
    proto = _protocol(protocol)
    client_id = client_id or f"test-{uuid.uuid4().hex[:12]}"
    if port is None:
        if broker is None:
            raise ValueError("mqtt_client needs a broker or a port")
        port = broker.ws_port if transport == "websockets" else broker.port
    if proto == paho.MQTTv5:
        client = paho.Client(client_id=client_id, protocol=proto, transport=transport)
    else:
        client = paho.Client(client_id=client_id, clean_session=clean, protocol=proto, transport=transport)
    client.reconnect_delay_set(min_delay=0.2, max_delay=2)  # type: ignore[arg-type]
    wrapper = MqttClient(client, proto, client_id)
    if will is not None:
        if isinstance(will, dict):
            client.will_set(**will)
        else:
            client.will_set(*will)
    if proto == paho.MQTTv5:
        props = properties
        if session_expiry is not None:
            props = props or Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
        client.connect(host, port, keepalive, clean_start=clean, properties=props)
    else:
        client.connect(host, port, keepalive)
    client.loop_start()
    try:
        wrapper._wait(lambda: wrapper.connacks, timeout, "CONNACK")
        flags, rc = wrapper.connacks[0]
        if rc != 0:
            raise RuntimeError(f"MQTT connect refused: {rc}")
        if subscribe:
            for topic in [subscribe] if isinstance(subscribe, str) else subscribe:
                wrapper.subscribe(topic)
    except BaseException:
        client.loop_stop()
        raise
    return wrapper


# --- fleet-manager --------------------------------------------------------------------------------


class ServiceStartError(AssertionError):
    """fleet-manager did not come up healthy (the message carries its log tail)."""


class FleetService:
    """One fleet-manager process. Its stdout/stderr go to `log_path`; restarts keep
    the environment (same port, database and MQTT client id)."""

    def __init__(self, binary: Path, env: dict[str, str], log_path: Path,
                 args: Iterable[str] = (), name: str = "fleet-manager"):
        self.binary = Path(binary)
        self.env = env
        self.args = list(args)
        self.log_path = Path(log_path)
        self.name = name
        self.port = int(env["MAESTRA_HTTP_PORT"])
        self.host = env.get("MAESTRA_HTTP_HOST", HOST)
        self.url = f"http://{self.host}:{self.port}"
        self.database_url = env.get("MAESTRA_DATABASE_URL")
        self.mqtt_url = env.get("MAESTRA_MQTT_URL")
        self.client_id = env.get("MAESTRA_MQTT_CLIENT_ID")
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()
        self.http.trust_env = False  # never a proxy for 127.0.0.1

    # --- process ---
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout: float = 20.0) -> "FleetService":
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if not self.binary.exists():
            raise ServiceStartError(f"fleet-manager binary not found at {self.binary}: build it first "
                                    "(cmake --build build) or set FLEET_MANAGER_BIN")
        with open(self.log_path, "ab") as log:
            log.write(f"=== harness: starting {self.binary} {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.binary), *self.args], env=self.env, cwd=str(REPO),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0) -> requests.Response:
        """Wait until GET /health answers 200; fails early if the process exits."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise ServiceStartError(f"{self.name} exited with status {code} before it was healthy; "
                                        f"log tail:\n{self.log_tail()}")
            try:
                r = self.http.get(self.url + "/health", timeout=1.0)
                if r.status_code == 200:
                    return r
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise ServiceStartError(f"{self.name} not healthy within {timeout:g}s (last: {last}); "
                                        f"log tail:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Send sig (SIGTERM: graceful) and wait, bounded; SIGKILL after timeout.
        Returns the exit status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        return _stop_process(self.proc, sig, timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash, no clean shutdown (the broker publishes the service's will)."""
        return self.stop(signal.SIGKILL)

    def restart(self, wait: bool = True, timeout: float = 20.0, sig: int = signal.SIGTERM) -> "FleetService":
        """Stop (if running) and start again with the same environment."""
        self.stop(sig)
        return self.start(wait=wait, timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    # --- HTTP helpers (timeout 10 s unless given) ---
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """One request on the keep-alive session. The server closes a connection
        idle for its keep-alive timeout (2 s); a request sent on it in the same
        instant is aborted before the server reads it (RemoteDisconnected or a
        reset, never a response), so it is sent again on a fresh connection, as
        RFC 9112 section 9.3.1 lets a client do. Timeouts are never retried."""
        kwargs.setdefault("timeout", 10.0)
        for attempt in range(3):
            try:
                return self.http.request(method, self.url + path, **kwargs)
            except requests.ConnectionError as exc:
                aborted = bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ProtocolError)
                if not aborted or isinstance(exc, requests.Timeout) or attempt == 2 or not self.is_running():
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


class ServiceFactory:
    """Starts fleet-manager processes against a Postgres cluster and a broker and
    stops them all in close(). See conftest.py's start_service fixture."""

    def __init__(self, postgres: PostgresCluster, broker: MosquittoBroker, log_dir: Path,
                 binary: Path | None = None):
        self.postgres = postgres
        self.broker = broker
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary) if binary else fleet_manager_binary()
        self.services: list[FleetService] = []

    def __call__(self, *, args: Iterable[str] = (), broker: MosquittoBroker | None = None,
                 database_url: str | None = None, wait: bool = True, timeout: float = 20.0,
                 name: str | None = None, **env: Any) -> FleetService:
        broker = broker or self.broker
        broker.ensure_running()
        index = len(self.services) + 1
        name = name or f"fleet-manager-{index}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("MAESTRA_")}
        full = {
            **base,
            "MAESTRA_HTTP_HOST": HOST,
            "MAESTRA_HTTP_PORT": str(free_port()),
            "MAESTRA_DATABASE_URL": database_url or self.postgres.new_database(),
            "MAESTRA_MQTT_URL": broker.url,
            "MAESTRA_MQTT_CLIENT_ID": f"fleet-manager-test-{uuid.uuid4().hex[:10]}",
        }
        for key, value in env.items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = str(value)
        service = FleetService(self.binary, full, self.log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log",
                               args=args, name=name)
        self.services.append(service)
        return service.start(wait=wait, timeout=timeout)

    def close(self) -> None:
        for service in self.services:
            try:
                service.stop()
            finally:
                service.http.close()
