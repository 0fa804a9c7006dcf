#!/usr/bin/python3
"""tools/fuzz-service/fuzz_service.py — a bounded black-box fuzzing run of a running
fleet-manager: hostile input on every HTTP route and every MQTT topic the
service handles, while one good device heartbeats over HTTP and MQTT and must
never be disturbed. It samples the service's RSS, checks the database after
the run, prints a summary and writes a JSON report; exit status 1 when there
is any finding (issue 10, "Done when").

Runs with Debian's /usr/bin/python3 (python3-requests, python3-paho-mqtt 1.6.1).
By default it starts its own throwaway Postgres 15, Mosquitto and fleet-manager
on 127.0.0.1 with tests/integration/harness.py; --attach-url attaches to a
running one instead. Everything is bounded by --duration and --rate.
See README.md in this folder.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import paho.mqtt.client as paho  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

MAX_BODY = 64 * 1024
MAX_HW = 128
READ_CAP = 256 * 1024          # bytes of an answer kept (the rest is counted and dropped)
REQUEST_TIMEOUT = 15.0         # no answer within this: a timeout finding
FAILING_KINDS = {
    "crash", "http_5xx", "mqtt_unavailable", "reset", "timeout", "accepted_invalid",
    "limit_not_enforced", "traversal", "smuggled_request", "good_device", "rss_limit",
    "db_rows", "log_error",
}

# Blank to a reader but not to a byte test: a hardware id of only these is blank.
UNICODE_BLANKS = [" ", "\u00a0", "\u200b", "\u2000", "\u2003", "\u3000", "\ufeff", "\u2060", "\u180e", "\u202f"]


ORIGINS: dict[str, str] = {}  # generated hardware id -> the generator functions that made it


def is_blank(text: str) -> bool:
    return all(c.isspace() or c in UNICODE_BLANKS for c in text)


def kind_of(value: Any) -> str:
    """A short label of a hostile value, for finding signatures."""
    if not isinstance(value, str):
        return type(value).__name__
    if value == "":
        return "empty"
    if is_blank(value):
        return "blank (Unicode spaces)"
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        return "control characters"
    n = len(value)
    for lo, hi in ((1, 64), (65, 128), (129, 200), (201, 1000), (1001, 5000)):
        if lo <= n <= hi:
            return f"{lo}-{hi} chars" if n > 64 else "text"
    return "over 5000 chars"


# --- raw HTTP ---------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None = None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    total: int = 0
    error: str | None = None          # reset / timeout / closed / refused / send_error
    elapsed: float = 0.0
    responses: int = 0                # status lines seen on the connection
    sent: int = 0
    send_error: str | None = None
    interim: list = field(default_factory=list)

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None


def _parse_head(buf: bytes) -> tuple[int | None, dict, int]:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, {}, -1
    lines = buf[:end].split(b"\r\n")
    m = re.match(rb"HTTP/\d\.\d (\d{3})", lines[0])
    status = int(m.group(1)) if m else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return status, headers, end + 4


def raw_http(host: str, port: int, pieces: Iterable[bytes], *, half_close: bool = False,
             timeout: float = REQUEST_TIMEOUT, pace: float = 0.0) -> Answer:
    """Send the request pieces on a fresh connection and read the answer. Stops
    sending when the server has already answered (so a refusal of an oversize
    body is read, not lost to a reset)."""
    ans = Answer()
    t0 = time.monotonic()
    send_deadline = t0 + 120
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError as exc:
        ans.error = f"connect:{type(exc).__name__}"
        ans.elapsed = time.monotonic() - t0
        return ans
    buf = bytearray()
    try:
        sock.settimeout(timeout)
        for piece in pieces:
            r, _, _ = select.select([sock], [], [], 0)
            if r:
                break  # the server answered (or closed) before the whole request was sent
            if time.monotonic() > send_deadline:
                ans.send_error = "send budget (120 s) used up"
                break
            try:
                sock.sendall(piece)
                ans.sent += len(piece)
            except OSError as exc:
                ans.send_error = type(exc).__name__
                break
            if pace:
                time.sleep(pace)
        deadline = time.monotonic() + timeout  # the answer is due this long after the request was sent
        if half_close and not ans.send_error:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ans.error = "timeout"
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                ans.error = "timeout"
                break
            except ConnectionResetError:
                ans.error = "reset"
                break
            except OSError as exc:
                ans.error = f"recv:{type(exc).__name__}"
                break
            if not chunk:
                ans.error = "closed" if not buf else None
                break
            ans.total += len(chunk)
            if len(buf) < READ_CAP:
                buf += chunk
            status, headers, body_at = _parse_head(bytes(buf[:65536]))
            if status is not None and "content-length" in headers:
                try:
                    need = body_at + int(headers["content-length"])
                except ValueError:
                    need = -1
                if need >= 0 and ans.total >= need:
                    # The full answer is in; look briefly for a second (smuggled) one.
                    r, _, _ = select.select([sock], [], [], 0.05)
                    if not r:
                        break
    finally:
        try:
            sock.close()
        except OSError:
            pass
    data = bytes(buf)
    interim = []
    while True:  # skip 1xx interim answers (100 Continue), keep a note of them
        m = re.match(rb"HTTP/1\.[01] (1\d\d)[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n", data)
        if not m:
            break
        interim.append(int(m.group(1)))
        data = data[m.end():]
    ans.interim = interim
    if interim and not data and ans.error is None:
        ans.error = "closed"
    ans.responses = len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", data))
    ans.status, ans.headers, body_at = _parse_head(data)
    if ans.status is not None:
        ans.body = data[body_at:]
        if ans.error in ("reset", "timeout", "closed"):
            ans.error = None  # answered; the server then closed or reset
    elif data and ans.error is None:
        ans.error = "garbled"
    ans.elapsed = time.monotonic() - t0
    return ans


def padded_body(head: bytes, pad: int, tail: bytes):
    """A registration body streamed in 64 KiB pieces: head, `pad` filler bytes, tail."""
    yield head
    block = b"x" * 65536
    left = pad
    while left > 0:
        yield block[:min(left, 65536)]
        left -= 65536
    yield tail


def request_bytes(method: str, target: bytes | str, headers: list[tuple[str | bytes, str | bytes]],
                  body: bytes | None = None, *, version: bytes = b"HTTP/1.1",
                  content_length: bool = True) -> bytes:
    if isinstance(target, str):
        target = target.encode()
    lines = [method.encode() + b" " + target + b" " + version]
    names = {(k.lower() if isinstance(k, str) else k.decode("latin-1").lower()) for k, _ in headers}
    if "host" not in names:
        lines.append(b"Host: 127.0.0.1")
    if "connection" not in names:
        lines.append(b"Connection: close")
    for k, v in headers:
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        lines.append(k + b": " + v)
    if body is not None and content_length and "content-length" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


# --- hostile values -------------------------------------------------------------------------------

BAD_UTF8 = [b"\xff", b"\xfe\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82",
            b"\xf4\x90\x80\x80"]
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\r\n", "\t"]


def pct(b: bytes) -> str:
    return "".join(f"%{x:02X}" for x in b)


class Gen:
    """Hostile values from a seeded random generator."""

    def __init__(self, rng: random.Random, tag: str):
        self.r = rng
        self.tag = tag
        self.n = 0

    def uid(self) -> str:
        self.n += 1
        return f"{self.tag}-{self.n}-{self.r.getrandbits(32):08x}"

    def valid_hw(self) -> str:
        hw = "fz-" + self.uid()
        f1, f2 = sys._getframe(1), sys._getframe(2)
        ORIGINS[hw] = f"{f2.f_code.co_name}/{f1.f_code.co_name}"
        return hw

    def overlong(self, lo: int = 129, hi: int = 20000) -> str:
        n = self.r.choice([129, 130, 200, 256, 1000, 2701, 3000, 8192, hi, self.r.randint(lo, hi)])
        n = max(lo, min(hi, n))
        unit = self.r.choice(["a", "é", "水", "😀", "x"])
        return (unit * n)[:n]

    def blank(self) -> str:
        return "".join(self.r.choice(UNICODE_BLANKS) for _ in range(self.r.randint(1, 4)))

    def control_text(self) -> str:
        return "dev" + self.r.choice(CONTROL) + "ice"

    def weird_valid_text(self, n: int = 20) -> str:
        alphabet = "abcXYZ019 -_.:é水😀\u200b'\"\\{}[]<>&%$"
        return "".join(self.r.choice(alphabet) for _ in range(self.r.randint(1, n))).strip() or "w"

    def scalar(self) -> Any:
        return self.r.choice([None, True, False, 0, -1, 1.5, 1e308, -2**63, 2**64, "", "x", [], {}, [1, 2],
                              {"a": 1}, "9" * 400, float("inf") if False else 1e-300])

    def deep(self, depth: int, kind: str = "mixed") -> str:
        opens = "".join(self.r.choice("[{") if kind == "mixed" else ("[" if kind == "array" else "{")
                        for _ in range(depth))
        out = []
        for c in opens:
            out.append('{"k":' if c == "{" else "[")
        text = "".join(out) + "1"
        for c in reversed(opens):
            text += "}" if c == "{" else "]"
        return text

    def many_members(self, target_bytes: int = 60000) -> str:
        n = target_bytes // 12
        return "{" + ",".join(f'"k{i}":{i % 10}' for i in range(n)) + "}"

    def malformed_json(self) -> bytes:
        valid = json.dumps({"name": "n", "device_type": "t", "hardware_id": self.valid_hw()}).encode()
        choice = self.r.randrange(16)
        if choice == 0:
            return valid[: self.r.randint(0, len(valid) - 1)]           # truncated
        if choice == 1:
            return b""
        if choice == 2:
            return self.r.choice([b"[]", b"null", b"1", b'"x"', b"true", b"[{}]"])  # not an object
        if choice == 3:
            return self.deep(self.r.choice([33, 40, 100, 1000, 5000]), "mixed").encode()
        if choice == 4:
            return ('{"name":"n","device_type":"t","metadata":' + self.deep(self.r.choice([32, 33, 64, 500]))
                    + "}").encode()
        if choice == 5:
            return valid[:-1] + b"," + self.r.choice(BAD_UTF8) + b"}"
        if choice == 6:
            return valid.replace(b'"n"', b'"' + self.r.choice(BAD_UTF8) + b'"', 1)   # invalid UTF-8 in a string
        if choice == 7:
            return b"{" + bytes(self.r.getrandbits(8) for _ in range(self.r.randint(1, 200))) + b"}"
        if choice == 8:
            return valid + b"garbage"
        if choice == 9:
            return b'{"name":"n",,}'
        if choice == 10:
            return valid.replace(b'"n"', b'"n\x00x"', 1)                 # raw NUL inside a string
        if choice == 11:
            return b'{"a":1}' * 3
        if choice == 12:
            return b'{"name":"n","device_type":"t","hardware_id":"x"' + b' ' * 10 + b'\x0c}'  # form feed: not JSON whitespace
        if choice == 13:
            return b'{"name":"\\ud800","device_type":"t","hardware_id":"x"}'  # lone surrogate escape
        if choice == 14:
            return b'{"name":1e99999,"device_type":"t","hardware_id":"x"}'
        return b"{" + b'"a":' * 20 + b"}"


# --- the run's shared state -------------------------------------------------------------------------


class State:
    def __init__(self, args, rss_limit_mb: float):
        self.args = args
        self.lock = threading.Lock()
        self.started = time.time()
        self.counts: dict[str, Counter] = defaultdict(Counter)      # route -> outcome -> n
        self.case_counts: dict[str, Counter] = defaultdict(Counter)  # "route | case" -> outcome -> n
        self.findings: dict[tuple, dict] = {}                        # signature -> {count, examples}
        self.notes: dict[tuple, dict] = {}
        self.accepted_ids: set[str] = set()                          # device ids from accepted registrations
        self.invalid_accepted_ids: dict[str, str] = {}               # id -> why it should have been refused
        self.deleted_ids: set[str] = set()
        self.sacrificial: list[tuple[str, str]] = []                 # (id, hardware id) to aim valid-id traffic at
        self.blocked_ok: set[str] = set()
        self.populated = 0
        self.good_id: str | None = None
        self.good_hw: str | None = None
        self.rss: list[tuple[float, int]] = []
        self.rss_limit_kb = int(rss_limit_mb * 1024)
        self.rss_abort_kb = int(args.rss_abort_mb * 1024)
        self.aborted: str | None = None
        self.crashed: str | None = None
        self.stop = threading.Event()
        self.mqtt_pending: dict[str, dict] = {}                      # reply topic -> case
        self.inflight: dict[int, str] = {}                              # HTTP requests in flight (for RSS jumps)
        self.recent: list[tuple[float, str]] = []                       # (ended at, case) of the last seconds
        self.rss_jumps: list[dict] = []
        self.hw_cases: dict[str, list] = defaultdict(list)               # hardware id -> what was sent with it
        self.good_stats = {"http_heartbeats": 0, "http_latency": [], "mqtt_heartbeats": 0, "status_msgs": 0,
                           "gets": 0}

    def count(self, route: str, outcome: str) -> None:
        with self.lock:
            self.counts[route][outcome] += 1

    def _add(self, table: dict, kind: str, route: str, sig: str, example: dict, keep: int = 3) -> None:
        key = (kind, route, sig)
        with self.lock:
            entry = table.setdefault(key, {"kind": kind, "route": route, "signature": sig, "count": 0,
                                           "examples": [], "first_at_s": round(time.time() - self.started, 1)})
            entry["count"] += 1
            if len(entry["examples"]) < keep:
                entry["examples"].append(example)

    def finding(self, kind: str, route: str, sig: str, example: dict) -> None:
        self._add(self.findings, kind, route, sig, example)

    def note(self, kind: str, route: str, sig: str, example: dict) -> None:
        self._add(self.notes, kind, route, sig, example)

    def add_sacrificial(self, device_id: str, hw: str) -> None:
        with self.lock:
            self.accepted_ids.add(device_id)
            if len(self.sacrificial) < 400:
                self.sacrificial.append((device_id, hw))

    def pick_sacrificial(self, rng: random.Random) -> tuple[str, str] | None:
        with self.lock:
            return rng.choice(self.sacrificial) if self.sacrificial else None

    def drop_sacrificial(self, device_id: str) -> None:
        with self.lock:
            self.sacrificial = [s for s in self.sacrificial if s[0] != device_id]
            self.deleted_ids.add(device_id)


def show(data: bytes | str, limit: int = 300) -> str:
    """A printable, bounded rendering of request/answer bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    text = data[:limit].decode("utf-8", "backslashreplace")
    text = "".join(c if (c.isprintable() or c == " ") else repr(c)[1:-1] for c in text)
    return text + (f"... [{len(data)} bytes]" if len(data) > limit else "")


# --- HTTP cases ------------------------------------------------------------------------------------------------


@dataclass
class HttpCase:
    name: str
    route: str
    method: str
    target: bytes
    pieces: Callable[[], Iterable[bytes]]  # the whole request, lazily
    describe: str                          # method, target, headers, body summary for a report
    expect: str = "any"                    # any | reject | accept
    limit: str | None = None               # body | headers | path: over a limit the issue asks for
    why: str = ""                          # what should happen, for the report
    half_close: bool = False
    pace: float = 0.0
    hw: str | None = None                  # a registration's hardware id
    target_id: str | None = None           # a device id in the path
    after: Callable[["HttpCase", Answer], None] | None = None


class HttpFuzzer:
    def __init__(self, state: State, rng: random.Random, gen: Gen, token: str | None, paths_limit: int,
                 max_body_mb: int, header_count_limit: int, header_bytes_limit: int):
        self.s = state
        self.r = rng
        self.g = gen
        self.token = token
        self.path_limit = paths_limit
        self.max_body = max_body_mb * 1024 * 1024
        self.header_count_limit = header_count_limit
        self.header_bytes_limit = header_bytes_limit

    # helpers
    def over_path_limit(self, target: str) -> bool:
        """The decoded path over --path-limit, or the whole request target over
        cpp-httplib's own 8,192 bytes: either must be 414."""
        decoded = urllib.parse.unquote_to_bytes(target.split("?", 1)[0])
        return len(decoded) > self.path_limit or len(target) > 8192

    def auth(self, admin: bool) -> list[tuple[str, str]]:
        if not admin or not self.token:
            return []
        roll = self.r.random()
        if roll < 0.9:
            return [("Authorization", f"Bearer {self.token}")]
        if roll < 0.95:
            return []
        return [("Authorization", self.r.choice(["Bearer wrong-token-xxxxxxxxxxxx", "Bearer ", "Basic Og==",
                                                 "Bearer " + "A" * 5000]))]

    def simple(self, name: str, route: str, method: str, target: str | bytes, body: bytes | None = None,
               headers: list | None = None, expect: str = "any", why: str = "", admin: bool = True,
               **kw) -> HttpCase:
        headers = list(headers or []) + self.auth(admin)
        raw = request_bytes(method, target, headers, body)
        t = target.encode() if isinstance(target, str) else target
        desc = f"{method} {show(t, 200)} headers={[(h[0], show(str(h[1]), 60)) for h in headers]} body={show(body or b'', 200)}"
        return HttpCase(name, route, method, t, lambda: [raw], desc, expect=expect, why=why, **kw)

    def reg_body(self, hw: str | None = None, **extra) -> dict:
        body = {"name": "fuzz " + self.g.weird_valid_text(10), "device_type": self.r.choice(["esp32", "arduino", "pi"]),
                "hardware_id": hw if hw is not None else self.g.valid_hw()}
        body.update(extra)
        return body

    def id_variant(self, allow_good: bool) -> tuple[str, str, str | None]:
        """(path segment, expect, device id) for /devices/{id}."""
        roll = self.r.random()
        if roll < 0.3:
            sac = self.s.pick_sacrificial(self.r)
            if sac:
                return sac[0], "any", sac[0]
        if roll < 0.4 and allow_good and self.s.good_id:
            return self.s.good_id, "any", self.s.good_id
        choices = [
            (str(uuid.uuid4()), "reject"),                       # unknown: 404
            ("nope", "reject"), ("", "reject"), (pct(self.r.choice(BAD_UTF8)), "reject"),
            ("%00", "reject"), ("%01", "reject"), (str(uuid.uuid4()) + "%00", "reject"),
            (str(uuid.uuid4()).upper(), "any"), ("{" + str(uuid.uuid4()) + "}", "any"),
            (urllib.parse.quote(self.g.overlong(129, 3000)), "reject"), ("..", "reject"), ("%2e%2e", "reject"),
            ("..%2f..%2fetc%2fpasswd", "reject"), ("00000000-0000-0000-0000-000000000000", "reject"),
            (urllib.parse.quote("\u200b"), "reject"), ("%20", "reject"),
        ]
        seg, exp = self.r.choice(choices)
        return seg, exp, None

    def hw_variant(self) -> tuple[str, str]:
        """(hardware id, expect) for JSON bodies."""
        roll = self.r.randrange(8)
        if roll == 0:
            return self.g.overlong(), "reject"
        if roll == 1:
            return self.g.blank(), "reject"
        if roll == 2:
            return self.g.control_text(), "reject"
        if roll == 3:
            return "", "reject"
        if roll == 4:
            return self.g.valid_hw() + "/+#" + self.g.weird_valid_text(5), "any"
        if roll == 5:
            return ("é" * 128)[:128], "any"
        return self.g.valid_hw() + self.g.weird_valid_text(8)[:20], "any"

    # --- registration
    def register(self) -> HttpCase:
        route = "POST /devices/register"
        kind = self.r.randrange(10)
        if kind == 0:  # valid, to grow the sacrificial set and exercise the accepting path
            hw = self.g.valid_hw()
            body = self.reg_body(hw, metadata={"k": self.g.weird_valid_text()}, ip_address="10.0.0.1")
            return self.simple("register_valid", route, "POST", "/devices/register", json.dumps(body).encode(),
                               expect="accept", admin=False, hw=hw, after=self.after_register)
        if kind == 1:  # conflict with an existing device
            sac = self.s.pick_sacrificial(self.r)
            hw = sac[1] if sac else (self.s.good_hw or "x")
            body = self.reg_body(hw)
            return self.simple("register_conflict", route, "POST", "/devices/register", json.dumps(body).encode(),
                               expect="reject", why="409 conflict with the existing id", admin=False, hw=hw,
                               after=self.after_register)
        if kind in (2, 3):
            body = self.g.malformed_json()
            return self.simple("register_malformed", route, "POST", "/devices/register", body, expect="reject",
                               why="400 malformed_json", admin=False, after=self.after_register)
        if kind in (4, 5):  # one field hostile
            hw, exp = self.hw_variant()
            body = self.reg_body(hw)
            label = f"hardware_id {kind_of(hw)}"
            if exp == "any" and self.r.random() < 0.5:
                field_name, value = self.r.choice([
                    ("name", self.g.overlong(201, 5000)), ("name", self.g.blank()), ("name", self.g.control_text()),
                    ("device_type", "t" * 65), ("firmware_version", "f" * 65), ("ip_address", "300.1.1.1"),
                    ("ip_address", "1.2.3.4\u0000"), ("offline_after", 0), ("offline_after", 604801),
                    ("offline_after", "30"), ("offline_after", 1.5), ("location", "room"), ("metadata", [1]),
                    ("metadata", {"a\u0000": 1}), ("name", 12), ("device_type", None), ("hardware_id", 12345),
                    ("hardware_id", ["x"]), ("provisioning_key", "k" * 300),
                ])
                body[field_name] = value
                exp = "reject"
                label = f"{field_name} {kind_of(value) if isinstance(value, str) else show(json.dumps(value), 30)}"
            return self.simple(f"register_field[{label}]", route, "POST", "/devices/register", json.dumps(body).encode(),
                               expect=exp, why="422 invalid_field naming the field" if exp == "reject" else "",
                               admin=False, hw=body.get("hardware_id") if isinstance(body.get("hardware_id"), str) else None,
                               after=self.after_register)
        if kind == 6:  # huge member count / deep metadata within 64 KiB
            hw = self.g.valid_hw()
            if self.r.random() < 0.5:
                meta = self.g.many_members(self.r.choice([20000, 60000]))
                exp = "any"
            else:
                d = self.r.choice([30, 31, 32, 33, 200])
                meta = self.g.deep(d)
                exp = "reject" if 1 + d > 32 else "any"  # the body object is level 1
            raw = ('{"name":"n","device_type":"t","hardware_id":"' + hw + '","metadata":' + meta + "}").encode()
            if len(raw) > MAX_BODY:
                raw = raw[:MAX_BODY]  # truncated: malformed
                exp = "reject"
            return self.simple("register_members", route, "POST", "/devices/register", raw, expect=exp, admin=False,
                               hw=hw, why="400 too deep / bounded cost", after=self.after_register)
        if kind == 7:  # raw bytes body
            body = bytes(self.r.getrandbits(8) for _ in range(self.r.randint(0, 2000)))
            return self.simple("register_bytes", route, "POST", "/devices/register", body, expect="reject",
                               why="400", admin=False)
        if kind == 8:  # unicode escapes of control characters / NUL
            body = json.dumps(self.reg_body(None, name="a\u0000b")).encode()
            return self.simple("register_nul", route, "POST", "/devices/register", body, expect="reject",
                               why="422 name contains control characters", admin=False, after=self.after_register)
        body = json.dumps(self.reg_body(None, hardware_id=self.g.overlong(129, 20000))).encode()
        if len(body) > MAX_BODY:
            return self.oversize_cl()
        return self.simple("register_long_hw", route, "POST", "/devices/register", body, expect="reject",
                           why="422 hardware_id too long", admin=False, after=self.after_register)

    def after_register(self, case: HttpCase, ans: Answer) -> None:
        doc = ans.json()
        if ans.status == 201 and isinstance(doc, dict) and "id" in doc:
            if case.expect == "reject" or case.limit:
                with self.s.lock:
                    self.s.accepted_ids.add(doc["id"])
                    self.s.invalid_accepted_ids[doc["id"]] = f"{case.name}: {case.why}"
            else:
                self.s.add_sacrificial(doc["id"], doc.get("hardware_id", ""))

    # --- heartbeat
    def heartbeat(self) -> HttpCase:
        route = "POST /devices/heartbeat"
        kind = self.r.randrange(8)
        if kind == 0 and self.s.good_id:   # hostile but invalid for the good device: must change nothing
            body = {"device_id": self.s.good_id}
            k, v = self.r.choice([("status", "offline"), ("status", 5), ("status", "ERROR"), ("firmware_version", "f" * 65),
                                  ("ip_address", "999.1.1.1"), ("metadata", "x"), ("metadata", {"a": "\u0000"}),
                                  ("status", ["error"]), ("firmware_version", "a\u0001")])
            body[k] = v
            return self.simple("heartbeat_good_invalid", route, "POST", "/devices/heartbeat",
                               json.dumps(body).encode(), expect="reject", admin=False,
                               why="422; the good device untouched")
        if kind == 1:
            return self.simple("heartbeat_malformed", route, "POST", "/devices/heartbeat", self.g.malformed_json(),
                               expect="reject", admin=False, why="400/422")
        if kind == 2:
            hw, exp = self.hw_variant()
            # a valid hardware id may belong to a device registered earlier: then 200 is right
            return self.simple("heartbeat_hw", route, "POST", "/devices/heartbeat",
                               json.dumps({"hardware_id": hw}).encode(), expect=exp, admin=False,
                               why="404 unknown / 422 invalid hardware_id")
        if kind == 3:
            did = self.r.choice([str(uuid.uuid4()), "nope", "", 5, None, [], self.g.overlong(), "\u0000",
                                 str(uuid.uuid4()) + "\u0000"])
            return self.simple("heartbeat_id", route, "POST", "/devices/heartbeat",
                               json.dumps({"device_id": did}).encode(), expect="reject", admin=False,
                               why="404/422 device_id")
        sac = self.s.pick_sacrificial(self.r)
        if sac:
            body = {"device_id": sac[0] if self.r.random() < 0.8 else None}
            if body["device_id"] is None:
                body = {"hardware_id": sac[1]}
            for _ in range(self.r.randint(0, 3)):
                k = self.r.choice(["status", "firmware_version", "ip_address", "metadata", "extra", "device_id"])
                body.setdefault(k, self.g.scalar())
            return self.simple("heartbeat_sacrificial", route, "POST", "/devices/heartbeat",
                               json.dumps(body).encode(), expect="any", admin=False)
        return self.simple("heartbeat_empty", route, "POST", "/devices/heartbeat", b"{}", expect="reject",
                           admin=False, why="422 device_id is required")

    # --- list
    def list_devices(self) -> HttpCase:
        route = "GET /devices"
        params = []
        exp = "any"
        why = ""
        bad: list[str] = []
        for name in self.r.sample(["status", "device_type", "hardware_id", "limit", "offset", "x"], self.r.randint(0, 3)):
            why_before = why
            roll = self.r.random()
            if roll < 0.35:
                value = pct(self.r.choice(BAD_UTF8))
                if name in ("status", "device_type", "hardware_id", "limit", "offset"):
                    exp, why = "reject", f"400/422 naming {name} (invalid UTF-8); issue 10 point 4"
            elif roll < 0.5:
                value = self.r.choice(["%00", "%01", "%0a", "a%00b"])
                if name in ("status", "device_type", "hardware_id", "limit", "offset"):
                    exp, why = "reject", f"422 {name} has control characters"
            elif roll < 0.6:
                value = "a" * self.r.choice([129, 5000])
                if name in ("status", "device_type", "hardware_id", "limit", "offset"):
                    exp, why = "reject", f"422 {name} too long"
            elif name == "limit":
                value = self.r.choice(["5", "0", "-1", "abc", "100001", "1e3", "99999999999999", ""])
                if value not in ("5", "0"):
                    exp, why = "reject", "422 limit"
            elif name == "offset":
                value = self.r.choice(["0", "3", "-1", "x", "9999999999999"])
                if value in ("-1", "x", "9999999999999"):
                    exp, why = "reject", "422 offset"
            elif name == "status":
                value = self.r.choice(["online", "offline", "bogus", "ONLINE", ""])
                if value not in ("online", "offline"):
                    exp, why = "reject", "422 status"
            else:
                value = urllib.parse.quote(self.g.weird_valid_text())
            params.append(f"{name}={value}")
            if why != why_before:
                bad.append(f"{name}={self.seg_label(value) if '%' in value else value[:12]}")
        if self.r.random() < 0.1:
            params.append("&".join(f"p{i}=1" for i in range(self.r.choice([100, 2000]))))
        target = "/devices" + ("?" + "&".join(params) if params else "")
        limit = "path" if self.over_path_limit(target) else None
        return self.simple(f"list[{' '.join(bad)}]" if bad else "list", route, "GET", target, expect=exp, why=why,
                           limit=limit)

    # --- /devices/{id}...
    def device_routes(self) -> HttpCase:
        which = self.r.randrange(5)
        if which == 0:
            seg, exp, did = self.id_variant(allow_good=True)
            q = "" if self.r.random() < 0.7 else "?" + self.r.choice(["x=1", "a=%FF", "limit=5"])
            return self.simple("get_device", "GET /devices/{id}", "GET", f"/devices/{seg}{q}", expect=exp,
                               why="400 not a UUID / 404 unknown")
        if which == 1:
            seg, exp, did = self.id_variant(allow_good=True)
            lim = self.r.choice(["", "?limit=10", "?limit=0", "?limit=1001", "?limit=-3", "?limit=%FF", "?limit=abc"])
            if lim not in ("", "?limit=10"):
                exp = "reject"
            return self.simple("history", "GET /devices/{id}/history", "GET", f"/devices/{seg}/history{lim}",
                               expect=exp, why="400/404/422")
        if which == 2:
            seg, exp, did = self.id_variant(allow_good=True)
            if did == self.s.good_id:
                body = json.dumps(self.r.choice([{"status": "bogus"}, {"id": "x"}, {"hardware_id": "x"},
                                                 {"name": ""}, {"name": 5}, {"offline_after": 0},
                                                 {"device_type": "x"}, {"location": [1]}, {"status": 1},
                                                 {"name": "ok", "status": "nope"}])).encode()
                if self.r.random() < 0.3:
                    body = self.g.malformed_json()
                return self.simple("patch_good_invalid", "PATCH /devices/{id}", "PATCH", f"/devices/{seg}", body,
                                   expect="reject", why="400/422; the good device untouched")
            roll = self.r.random()
            if roll < 0.4:
                body = self.g.malformed_json()
            else:
                body = {}
                for _ in range(self.r.randint(0, 3)):
                    k = self.r.choice(["name", "firmware_version", "ip_address", "location", "metadata",
                                       "offline_after", "status", "id", "hardware_id", "device_type", "zzz"])
                    body[k] = self.r.choice([self.g.scalar(), self.g.weird_valid_text(), "maintenance", "online",
                                             self.g.overlong(129, 3000)])
                body = json.dumps(body).encode()
            return self.simple("patch", "PATCH /devices/{id}", "PATCH", f"/devices/{seg}", body,
                               expect="any" if exp == "any" else "reject", target_id=did)
        if which == 3:
            seg, exp, did = self.id_variant(allow_good=False)
            return self.simple("delete", "DELETE /devices/{id}", "DELETE", f"/devices/{seg}", expect=exp,
                               target_id=did, after=self.after_delete, why="400/404")
        seg, exp, did = self.id_variant(allow_good=False)
        return self.simple("credentials", "POST /devices/{id}/credentials", "POST", f"/devices/{seg}/credentials",
                           b"" if self.r.random() < 0.7 else self.g.malformed_json(), expect="reject",
                           why="404 (open mode: no credentials) / 400")

    def after_delete(self, case: HttpCase, ans: Answer) -> None:
        if ans.status == 204 and case.target_id:
            self.s.drop_sacrificial(case.target_id)

    # --- hardware blocks
    def hardware(self) -> HttpCase:
        which = self.r.randrange(3)
        if which == 0:
            return self.simple("blocked_list", "GET /hardware/blocked", "GET",
                               "/hardware/blocked" + self.r.choice(["", "?x=%FF", "?limit=1"]), expect="any")
        variants = [
            (lambda: urllib.parse.quote(self.g.valid_hw()), "accept"),
            (lambda: pct(self.r.choice(BAD_UTF8)), "reject"),
            (lambda: "ab" + pct(self.r.choice(BAD_UTF8)) + "cd", "reject"),
            (lambda: self.r.choice(["%00", "a%00b", "%01", "%7F", "%0A"]), "reject"),
            (lambda: urllib.parse.quote(self.g.overlong(129, 3000)), "reject"),
            (lambda: urllib.parse.quote(self.g.blank()), "reject"),
            (lambda: self.r.choice(["..", "%2e%2e", "..%2f..%2fetc"]), "any"),
        ]
        make, exp = self.r.choice(variants)
        seg = make()
        if which == 1:
            body = None
            if self.r.random() < 0.5:
                body = self.r.choice([b"", json.dumps({"reason": "stolen"}).encode(),
                                      json.dumps({"reason": "r" * 201}).encode(), json.dumps({"reason": 5}).encode(),
                                      self.g.malformed_json()])
                if body not in (b"", json.dumps({"reason": "stolen"}).encode()):
                    exp = "reject"
            if body is None:
                body = b""
            hw = urllib.parse.unquote(seg, errors="surrogateescape")
            return self.simple(f"block[{self.seg_label(seg)}]", "PUT /hardware/{hw}/block", "PUT", f"/hardware/{seg}/block", body,
                               expect=exp, why="422 hardware_id / 400 body", hw=hw, after=self.after_block)
        return self.simple(f"unblock[{self.seg_label(seg)}]", "DELETE /hardware/{hw}/block", "DELETE", f"/hardware/{seg}/block",
                           expect="reject" if exp == "reject" else "any", why="400/422 hardware_id, 404 not blocked")

    @staticmethod
    def seg_label(seg: str) -> str:
        raw = urllib.parse.unquote_to_bytes(seg)
        try:
            return kind_of(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return "invalid UTF-8"

    def after_block(self, case: HttpCase, ans: Answer) -> None:
        if ans.status == 200 and case.hw is not None:
            with self.s.lock:
                self.s.blocked_ok.add(case.hw)

    # --- operations and static files, unknown paths, wrong methods
    def ops(self) -> HttpCase:
        path = self.r.choice(["/health", "/metrics", "/openapi.json"])
        roll = self.r.random()
        if roll < 0.4:
            return self.simple("ops", f"GET {path}", "GET", path, admin=False)
        if roll < 0.6:
            q = self.r.choice(["?%FF=%FF", "?a=" + "b" * 3000, "?%00", "?&&&=", "?" + "x" * 9000])
            return self.simple("ops_query", f"GET {path}", "GET", path + q, admin=False,
                               limit="path" if self.over_path_limit(path + q) else None)
        if roll < 0.8:
            method = self.r.choice(["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "FOO", "get",
                                    "HEAD"])
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            return self.simple("ops_method", f"GET {path}", method, path, body, admin=False,
                               expect="any" if method in ("HEAD", "get") else "reject", why="405/400/501")
        return self.body_on_get(path)

    def body_on_get(self, path: str) -> HttpCase:
        """A GET with a body that holds a second request: the second must never run."""
        smuggled = request_bytes("DELETE", f"/devices/{self.s.good_id or uuid.uuid4()}",
                                 self.auth(True), None)
        headers = [("Connection", "keep-alive")]
        if self.r.random() < 0.5:
            headers.append(("Content-Length", str(len(smuggled))))
            raw = request_bytes("GET", path, headers, None) + smuggled
        else:
            chunk = f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n"
            headers.append(("Transfer-Encoding", "chunked"))
            raw = request_bytes("GET", path, headers, None) + chunk
        return HttpCase("get_with_body", f"GET {path}", "GET", path.encode(), lambda: [raw],
                        f"GET {path} with a body holding `DELETE /devices/<good id>` ({len(raw)} bytes)",
                        expect="reject", why="400 and the connection closed; the inner request never runs",
                        half_close=True)

    def static(self) -> HttpCase:
        route = "GET / (static)"
        good = ["/", "/index.html", "/app.js", "/style.css", "/node_modules/mqtt/dist/mqtt.min.js", "/screenshot.png"]
        bad = [("/index.html%00.json", "reject", "404: a NUL in a path never serves index.html (issue 10 point 6)"),
               ("/index.html%00", "reject", "404/400"), ("/app.js%00.png", "reject", "404/400"),
               ("/../../../../etc/passwd", "reject", "never a file outside the web root"),
               ("/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "reject", "never a file outside the web root"),
               ("/..%2f..%2f..%2f..%2fetc%2fpasswd", "reject", "never a file outside the web root"),
               ("/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd", "reject", "never a file outside the web root"),
               ("/....//....//etc/passwd", "reject", "never a file outside the web root"),
               ("/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "reject", "never a file outside the web root"),
               ("/index.html/..%2f..%2f..%2fetc/passwd", "reject", "never a file outside the web root"),
               ("/" + pct(self.r.choice(BAD_UTF8)), "reject", "404/400"),
               ("/index.html%FF", "reject", "404/400"), ("/.git/config", "reject", "404"),
               ("/%2e%2e/README.md", "reject", "never a file outside the web root"),
               ("/../README.md", "reject", "never a file outside the web root"),
               ("//index.html", "any", ""), ("/index.html?%FF", "any", ""), ("/./index.html", "any", "")]
        if self.r.random() < 0.35:
            return self.simple("static", route, self.r.choice(["GET", "GET", "HEAD"]), self.r.choice(good), admin=False)
        path, exp, why = self.r.choice(bad)
        return self.simple("static_hostile", route, "GET", path, expect=exp, why=why, admin=False)

    def unknown(self) -> HttpCase:
        roll = self.r.random()
        if roll < 0.3:
            lim = self.path_limit
            n = self.r.choice([lim + 1, 8000, 8190, 9000, 16384, 65536, self.r.randint(lim + 1, 70000),
                               max(10, lim - 200), self.r.randint(10, lim)])
            base = self.r.choice(["/devices/", "/", "/hardware/", "/devices/x/history/", "/index.html/"])
            unit = self.r.choice(["a", "/", "%FF", "ab/", "(", "%2e"])
            path = (base + unit * n)[:n]
            method = self.r.choice(["GET", "POST", "DELETE", "PATCH"])
            # GET of "/" followed by slashes only is the dashboard's "/" (empty segments): a 200 is fine there
            slashes_only = method == "GET" and set(path) == {"/"}
            return self.simple("long_path", "long path", method, path,
                               b"{}" if self.r.random() < 0.3 else None,
                               expect="any" if slashes_only else "reject", limit="path" if self.over_path_limit(path) else None,
                               why=f"414 before any pattern matching (path of {len(urllib.parse.unquote_to_bytes(path))} bytes decoded; "
                                   "issue 10 point 5)")
        paths = ["/nope", "/devices/register/extra", "/devices//history", "/DEVICES", "/devices/%FF/history",
                 "/hardware", "/hardware//block", "/api/v1/devices", "/" + "%00", "/metrics/x", "/health/..",
                 "*", "http://evil/devices", "/%", "/%G0", "/devices/" + str(uuid.uuid4()) + "/%FF"]
        method = self.r.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        return self.simple("unknown_path", "unknown path", method, self.r.choice(paths), body, expect="reject",
                           why="404/400/405")

    def wrong_method(self) -> HttpCase:
        path, allowed = self.r.choice([("/devices/register", "POST"), ("/devices/heartbeat", "POST"),
                                       ("/devices", "GET"), (f"/devices/{uuid.uuid4()}", "GET"),
                                       ("/hardware/blocked", "GET"), ("/hardware/x/block", "PUT")])
        method = self.r.choice([m for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT", "BREW",
                                            "post", "OPTIONS", "PROPFIND"] if m != allowed])
        body = b"{}" if method in ("POST", "PUT", "PATCH", "post") else None
        return self.simple("wrong_method", "wrong method", method, path, body, expect="reject", why="405 with Allow")

    # --- framing and limits
    def pad_registration(self, size: int) -> tuple[bytes, bytes, int, str]:
        hw = self.g.valid_hw()
        head = ('{"name":"big","device_type":"t","hardware_id":"' + hw + '","metadata":{"pad":"').encode()
        tail = b'"}}'
        return head, tail, max(0, size - len(head) - len(tail)), hw

    def body_size(self) -> int:
        return self.r.choice([MAX_BODY + 1, MAX_BODY + 100, 100_000, 1_000_000, 4_000_000,
                              self.r.randint(MAX_BODY + 1, self.max_body)])

    def oversize_cl(self) -> HttpCase:
        size = self.body_size()
        head, tail, pad, hw = self.pad_registration(size)
        route = "POST /devices/register"

        def pieces():
            yield request_bytes("POST", "/devices/register", [("Content-Length", str(size))], None, content_length=False)
            yield from padded_body(head, pad, tail)
        return HttpCase("oversize_content_length", route, "POST", b"/devices/register", pieces,
                        f"POST /devices/register Content-Length: {size}, a valid registration padded to {size} bytes",
                        expect="reject", limit="body", why="413 before the body is read", hw=hw,
                        after=self.after_register)

    def framing(self) -> HttpCase:
        kind = self.r.randrange(15)
        route = "framing"
        if kind == 0:
            return self.oversize_cl()
        if kind == 1:  # chunked over the limit
            size = self.body_size()
            head, tail, pad, hw = self.pad_registration(size)
            csize = self.r.choice([1, 100, 8192, 65536, 1 << 20])
            if csize < 100:
                size = min(size, 300_000)

            def pieces():
                yield request_bytes("POST", "/devices/register", [("Transfer-Encoding", "chunked")], None,
                                    content_length=False)
                def body():
                    yield from padded_body(head, pad, tail)
                buf = b""
                out = []
                out_len = 0
                for part in body():
                    buf += part
                    while len(buf) >= csize:
                        framed = f"{csize:x}\r\n".encode() + buf[:csize] + b"\r\n"
                        buf = buf[csize:]
                        out.append(framed)
                        out_len += len(framed)
                        if out_len >= 65536:
                            yield b"".join(out)
                            out, out_len = [], 0
                if buf:
                    out.append(f"{len(buf):x}\r\n".encode() + buf + b"\r\n")
                out.append(b"0\r\n\r\n")
                yield b"".join(out)
            return HttpCase("chunked_oversize", "POST /devices/register", "POST", b"/devices/register", pieces,
                            f"POST /devices/register Transfer-Encoding: chunked, {size} bytes in chunks of {csize} "
                            "(a valid registration padded)", expect="reject", limit="body",
                            why="413 while reading, whatever the framing (issue 10 point 5)", hw=hw,
                            after=self.after_register)
        if kind == 2:  # gzip: small, or inflating past the limit
            big = self.r.random() < 0.7
            size = self.body_size() if big else 2000
            head, tail, pad, hw = self.pad_registration(size)
            comp = zlib.compressobj(9, zlib.DEFLATED, 31)
            blob = comp.compress(head)
            left = pad
            block = b"x" * (1 << 20)
            while left > 0:
                blob += comp.compress(block[:min(left, 1 << 20)])
                left -= 1 << 20
            blob += comp.compress(tail) + comp.flush()
            if len(blob) > MAX_BODY:
                blob = blob[:MAX_BODY]
            raw = request_bytes("POST", "/devices/register", [("Content-Encoding", "gzip")], blob)
            return HttpCase("gzip", "POST /devices/register", "POST", b"/devices/register", lambda: [raw],
                            f"POST /devices/register Content-Encoding: gzip, {len(blob)} bytes inflating to {size}",
                            expect="reject" if big else "any", limit="body" if big else None,
                            why="413 (or 415): the inflated body is over 64 KiB (issue 10 point 5)" if big else "",
                            hw=hw, after=self.after_register)
        if kind == 3:  # many headers
            n = self.r.choice([50, 200, 1000, 5000, 20000, 100000])
            over = n > self.header_count_limit
            path = self.r.choice(["/health", "/devices/register", "/devices"])
            method = "POST" if path == "/devices/register" else "GET"
            hw = self.g.valid_hw()
            body = json.dumps(self.reg_body(hw)).encode() if method == "POST" else None
            extra = [(f"X-F{i}", "v") for i in range(n)]
            raw = request_bytes(method, path, extra + self.auth(path == "/devices"), body)
            return HttpCase("many_headers", route, method, path.encode(), lambda: [raw],
                            f"{method} {path} with {n} headers ({len(raw)} bytes)", expect="reject" if over else "any",
                            limit="headers" if over else None,
                            why=f"431 over the header-count limit (issue 10 point 5: 100,000 headers got 200)",
                            hw=hw if method == "POST" else None, after=self.after_register if method == "POST" else None)
        if kind == 4:  # one huge header / many big ones
            size = self.r.choice([9000, 65536, 1 << 20, 4 << 20])
            raw = request_bytes("GET", "/health", [("X-Big", "a" * size)], None)
            over = size > self.header_bytes_limit
            return HttpCase("huge_header", route, "GET", b"/health", lambda: [raw], f"GET /health with one {size}-byte header",
                            expect="reject" if over else "any", limit="headers" if over else None,
                            why="431 over the header-size limit")
        if kind == 5:  # Content-Length far beyond, nothing sent
            cl = self.r.choice([10**7, 10**12, 2**63 - 1, 2**64 + 5, 10**30])
            raw = request_bytes("POST", "/devices/register", [("Content-Length", str(cl))], None, content_length=False)
            return HttpCase("huge_content_length", route, "POST", b"/devices/register", lambda: [raw],
                            f"POST /devices/register Content-Length: {cl}, no body", expect="reject", limit="body",
                            why="413 at once")
        if kind == 6:  # bad Content-Length values / conflicting framing
            hw = self.g.valid_hw()
            body = json.dumps(self.reg_body(hw)).encode()
            n = len(body)
            # (headers, expect): RFC 9112 section 6.3 makes differing Content-Lengths and
            # non-numbers an error; optional whitespace around a value is legal.
            variant, exp = self.r.choice([
                ([("Content-Length", "-1")], "reject"), ([("Content-Length", "abc")], "reject"),
                ([("Content-Length", "5, 5")], "reject"),
                ([("Content-Length", str(n)), ("Content-Length", str(n + 3))], "reject"),
                ([("Content-Length", str(n)), ("Transfer-Encoding", "chunked")], "any"),
                ([("Transfer-Encoding", "gzip, chunked")], "reject"), ([("Transfer-Encoding", "identity")], "any"),
                ([("Content-Length", " " + str(n))], "any"), ([("Content-Length", "0x10")], "reject"),
                ([("Content-Length", "+" + str(n))], "reject")])
            raw = request_bytes("POST", "/devices/register", variant, None, content_length=False) + body
            label = "duplicate Content-Length" if len(variant) == 2 and variant[1][0] == "Content-Length" else \
                ", ".join(f"{k}: {v!r}" for k, v in variant).replace(str(n), "N")
            return HttpCase(f"bad_framing[{label}]", route, "POST", b"/devices/register", lambda: [raw],
                            f"POST /devices/register {variant} body={show(body, 120)}", expect=exp,
                            half_close=self.r.random() < 0.5, why="400 (RFC 9112 section 6.3)" if exp == "reject" else "",
                            hw=hw, after=self.after_register)
        if kind == 7:  # malformed chunked
            bad = self.r.choice([b"zz\r\nabc\r\n0\r\n\r\n", b"ffffffffffffffffff\r\nabc\r\n", b"-5\r\nabc\r\n",
                                 b"3\r\nabcdef\r\n0\r\n\r\n", b"3;" + b"x" * 20000 + b"\r\nabc\r\n0\r\n\r\n",
                                 b"5\r\n{}", b"0\r\n" + b"X-T: 1\r\n" * 2000 + b"\r\n"])
            raw = request_bytes("POST", "/devices/heartbeat", [("Transfer-Encoding", "chunked")], None,
                                content_length=False) + bad
            return HttpCase("bad_chunked", route, "POST", b"/devices/heartbeat", lambda: [raw],
                            f"POST /devices/heartbeat chunked: {show(bad, 80)}", expect="reject", half_close=True,
                            why="400")
        if kind == 8:  # truncated body, then half-close
            hw = self.g.valid_hw()
            body = json.dumps(self.reg_body(hw)).encode()
            raw = request_bytes("POST", "/devices/register", [("Content-Length", str(len(body) + 50))], None,
                                content_length=False) + body
            return HttpCase("truncated_body", route, "POST", b"/devices/register", lambda: [raw],
                            f"POST /devices/register Content-Length {len(body) + 50}, {len(body)} bytes sent, then EOF",
                            expect="reject", half_close=True, why="400 or close; never a device", hw=hw,
                            after=self.after_register)
        if kind == 9:  # POST without any length
            hw = self.g.valid_hw()
            raw = request_bytes("POST", "/devices/register", [], None) + json.dumps(self.reg_body(hw)).encode()
            return HttpCase("no_length", route, "POST", b"/devices/register", lambda: [raw],
                            "POST /devices/register, a body but no Content-Length, then EOF", expect="reject",
                            half_close=True, why="400/411 (docs/http.md)",
                            hw=hw, after=self.after_register)
        if kind == 10:  # garbage request lines and headers
            raw = self.r.choice([
                b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"GET /\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"GET / HTTP/1.1\nHost: x\n\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                b"GET /health HTTP/1.1\r\n" + b" folded\r\n" * 3 + b"\r\n", b"\r\n" * 5000,
                b"GET /h\xffealth HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", bytes(self.r.getrandbits(8) for _ in range(500)),
                b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello"])
            return HttpCase("garbage_request", route, "?", b"?", lambda: [raw], f"raw {show(raw, 120)}",
                            expect="any", half_close=True)
        if kind == 11:  # slow sender, bounded
            body = json.dumps({"device_id": str(uuid.uuid4())}).encode()
            raw = request_bytes("POST", "/devices/heartbeat", [], body)
            step = max(1, len(raw) // 20)
            parts = [raw[i:i + step] for i in range(0, len(raw), step)]
            return HttpCase("slow_sender", route, "POST", b"/devices/heartbeat", lambda: parts,
                            f"POST /devices/heartbeat sent in {len(parts)} pieces 50 ms apart", expect="reject",
                            pace=0.05, why="404")
        if kind == 12:  # Expect: 100-continue with an oversize length
            raw = request_bytes("POST", "/devices/register", [("Expect", "100-continue"), ("Content-Length", "10000000")],
                                None, content_length=False)
            return HttpCase("expect_continue", route, "POST", b"/devices/register", lambda: [raw],
                            "POST /devices/register Expect: 100-continue, Content-Length: 10000000", expect="reject",
                            limit="body", why="413 without reading", half_close=True)
        if kind == 13:  # a complete, valid request, then the client half-closes (as `nc -N` does)
            if self.r.random() < 0.5:
                raw = request_bytes("GET", "/health", [], None)
                return HttpCase("half_close_valid", route, "GET", b"/health", lambda: [raw],
                                "GET /health, then the client shuts down its sending side", expect="accept",
                                half_close=True, why="200: the request is complete, its answer must be sent")
            hw = self.g.valid_hw()
            raw = request_bytes("POST", "/devices/register", [], json.dumps(self.reg_body(hw)).encode())
            return HttpCase("half_close_valid", route, "POST", b"/devices/register", lambda: [raw],
                            "POST /devices/register (a valid registration with Content-Length), then the client "
                            "shuts down its sending side", expect="accept", half_close=True, hw=hw,
                            why="201: the request is complete, its answer must be sent", after=self.after_register)
        # keep-alive: many requests on one connection (pipelined)
        one = request_bytes("GET", "/health", [("Connection", "keep-alive")], None)
        n = self.r.choice([5, 25, 200])
        raw = one * n + request_bytes("GET", "/health", [], None)
        return HttpCase("pipelined", route, "GET", b"/health", lambda: [raw], f"{n + 1} pipelined GET /health",
                        expect="any", half_close=False)

    def burst_register_conflict(self) -> list[HttpCase]:
        """Several registrations of one new hardware id at once: one 201, the rest 409."""
        hw = self.g.valid_hw()
        body = json.dumps(self.reg_body(hw)).encode()
        return [self.simple("register_race", "POST /devices/register", "POST", "/devices/register", body,
                            expect="any", admin=False, hw=hw, after=self.after_race) for _ in range(4)]

    def after_race(self, case: HttpCase, ans: Answer) -> None:
        doc = ans.json()
        if ans.status == 201 and isinstance(doc, dict) and "id" in doc:
            self.s.add_sacrificial(doc["id"], doc.get("hardware_id", ""))

    FAMILIES = {"register": 18, "heartbeat": 14, "list": 8, "device": 16, "hardware": 7, "ops": 6, "static": 7,
                "unknown": 8, "wrong_method": 4, "framing": 12}

    def next_case(self, only: set[str] | None = None) -> HttpCase:
        fn = {"register": self.register, "heartbeat": self.heartbeat, "list": self.list_devices,
              "device": self.device_routes, "hardware": self.hardware, "ops": self.ops, "static": self.static,
              "unknown": self.unknown, "wrong_method": self.wrong_method, "framing": self.framing}
        table = [(fn[k], w) for k, w in self.FAMILIES.items() if not only or k in only]
        fns, weights = zip(*table)
        return self.r.choices(fns, weights)[0]()


def judge_http(state: State, case: HttpCase, ans: Answer) -> None:
    if ans.status is not None:
        outcome = f"{ans.status}"
    else:
        outcome = ans.error or "no_answer"
    state.count(case.route, outcome)
    with state.lock:
        state.case_counts[f"{case.route} | {case.name.split('[')[0]}"][outcome] += 1
    if case.hw is not None:
        with state.lock:
            if len(state.hw_cases[case.hw]) < 5:
                state.hw_cases[case.hw].append(f"HTTP {case.name} -> {outcome}: {case.describe[:160]}")
    example = {"case": case.name, "request": case.describe, "sent_bytes": ans.sent,
               "answer_status": ans.status, "interim": ans.interim or None, "answer_error": ans.error, "send_error": ans.send_error,
               "answer_body": show(ans.body, 400), "elapsed_s": round(ans.elapsed, 3),
               "should": case.why or "no 5xx"}
    if ans.status is not None and ans.status >= 500:
        state.finding("http_5xx", case.route, f"{case.name} -> {ans.status}", example)
    elif ans.status is None:
        if ans.error == "timeout":
            state.finding("timeout", case.route, case.name, example)
        elif ans.error == "reset" and not (case.limit or ans.send_error):
            state.finding("reset", case.route, case.name, example)
        elif case.name == "half_close_valid":
            state.finding("answer_lost", case.route, f"{case.name} {case.method} ({ans.error})", example)
        elif ans.error in ("reset", "closed") or (ans.error or "").startswith("recv"):
            state.note("closed_without_answer", case.route, f"{case.name} ({ans.error})", example)
        else:
            state.finding("reset", case.route, f"{case.name} ({ans.error})", example)
    else:
        refused = 400 <= ans.status < 500
        if case.limit and ans.status not in (400, 411, 413, 414, 415, 431):
            want = {"body": "413", "path": "414", "headers": "431"}[case.limit]
            state.finding("limit_not_enforced", case.route, f"{case.name} -> {ans.status} (want {want})", example)
        elif case.expect == "reject" and not refused:
            state.finding("accepted_invalid", case.route, f"{case.name} -> {ans.status}", example)
        elif case.limit and ans.status != {"body": 413, "path": 414, "headers": 431}[case.limit]:
            state.note("limit_refused_otherwise", case.route, f"{case.name} -> {ans.status}", example)
        if case.expect == "accept" and ans.status not in (200, 201, 204):
            state.note("valid_refused", case.route, f"{case.name} -> {ans.status}", example)
        if ans.status == 200 and case.route in ("GET / (static)", "unknown path", "long path") and (
                b"root:x:0:0" in ans.body or b"# Maestra Fleet Manager" in ans.body or b"[core]" in ans.body):
            example["answer_body"] = "(a file outside the web root; not shown)"
            state.finding("traversal", case.route, case.name, example)
    if case.limit == "body" and 100 in (ans.interim or []):
        if ans.status in (413, None):  # refused at once (or closed on the client's EOF), nothing read
            state.note("continue_before_413", case.route,
                       f"{case.name} -> 100 Continue, then {ans.status or ans.error}", example)
        else:
            state.finding("limit_not_enforced", case.route, f"{case.name} -> 100 Continue (want 413)", example)
    if ans.responses > 1 and case.name == "get_with_body":
        state.finding("smuggled_request", case.route, case.name, example)


# --- MQTT --------------------------------------------------------------------------------------------------------------


@dataclass
class MqttCase:
    name: str
    route: str
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    expect: str = "any"        # reject | accept | any (registrations only)
    why: str = ""
    reply_topic: str | None = None
    hw: str | None = None
    v5: bool = True
    props: dict = field(default_factory=dict)


class MqttFuzzer:
    def __init__(self, state: State, rng: random.Random, gen: Gen, prefix: str, http: HttpFuzzer):
        self.s = state
        self.r = rng
        self.g = gen
        self.p = prefix
        self.http = http
        self.seq = 0

    def reg_payload(self, include_hw: str | None) -> tuple[bytes, str]:
        roll = self.r.randrange(10)
        body = {"name": "mq " + self.g.weird_valid_text(8), "device_type": "esp32"}
        if include_hw is not None:
            body["hardware_id"] = include_hw
        if roll < 4:
            return json.dumps(body).encode(), "any"
        if roll == 4:
            return self.g.malformed_json(), "reject"
        if roll == 5:
            body["hardware_id"] = "mismatch-" + self.g.uid()
            return json.dumps(body).encode(), "reject"
        if roll == 6:
            k, v = self.r.choice([("name", 5), ("name", ""), ("name", self.g.overlong(201, 3000)), ("device_type", None),
                                  ("ip_address", "1.2.3"), ("offline_after", -5), ("metadata", "x"),
                                  ("name", "a\u0000b"), ("location", {"\u0000": 1})])
            body[k] = v
            return json.dumps(body).encode(), "reject"
        if roll == 7:
            raw = json.dumps(body).encode()
            return raw[:-1] + b',"pad":"' + b"x" * self.r.choice([MAX_BODY, 200_000, 1_000_000]) + b'"}', "reject"
        if roll == 8:
            return ('{"name":"n","device_type":"t","metadata":' + self.g.many_members(self.r.choice([30000, 60000]))
                    + "}").encode(), "any"
        return json.dumps(body).encode().replace(b'"esp32"', b'"esp\xff32"'), "reject"

    def topic_hw(self) -> tuple[str, str]:
        roll = self.r.randrange(9)
        if roll < 3:
            return self.g.valid_hw(), "any"
        if roll == 3:
            return self.g.overlong(129, 20000), "reject"
        if roll == 4:
            return self.g.blank(), "reject"
        if roll == 5:
            return self.g.valid_hw() + "\u00e9\u6c34\U0001F600", "any"
        if roll == 6:
            return "", "reject"
        if roll == 7:
            sac = self.s.pick_sacrificial(self.r)
            return (sac[1], "reject") if sac and "/" not in sac[1] and "+" not in sac[1] and "#" not in sac[1] \
                else (self.g.valid_hw(), "any")
        return "$" + self.g.valid_hw(), "any"

    def register(self) -> MqttCase:
        hw, exp_topic = self.topic_hw()
        in_body = None if self.r.random() < 0.7 else hw
        payload, exp_payload = self.reg_payload(in_body)
        exp = "reject" if "reject" in (exp_topic, exp_payload) else "any"
        why = []
        if exp_topic == "reject":
            why.append("invalid_field hardware_id (overlong/blank topic level: issue 10 point 3) or conflict")
        if exp_payload == "reject":
            why.append("malformed_json / invalid_field / payload_too_large")
        self.seq += 1
        v5 = self.r.random() < 0.85
        reply = f"fuzzreply/{self.s.args.seed}/{self.g.tag}/{self.seq}" if v5 else None
        return MqttCase("register", "MQTT register", f"{self.p}/hardware/{hw}/register", payload,
                        self.r.choice([0, 1, 1]), expect=exp, why="; ".join(why), reply_topic=reply, hw=hw, v5=v5)

    def id_level(self, allow_good: bool) -> tuple[str, bool]:
        """(id level, is the good device)."""
        roll = self.r.random()
        if roll < 0.35:
            sac = self.s.pick_sacrificial(self.r)
            if sac:
                return sac[0], False
        if roll < 0.5 and allow_good and self.s.good_id:
            return self.s.good_id, True
        return self.r.choice([str(uuid.uuid4()), "nope", "", self.g.overlong(129, 20000), self.g.blank(),
                              str(uuid.uuid4()).upper(), "\u00e9\u6c34", "..", str(uuid.uuid4()) + "x"]), False

    def heartbeat(self) -> MqttCase:
        level, good = self.id_level(allow_good=True)
        if good:
            payload = self.r.choice([b'{"status":5}', b'{"status":"offline"}', b'{"status":"ERROR"}', b"[1]", b"null",
                                     b'{"firmware_version":"' + b"f" * 65 + b'"}', b'{"ip_address":"1.2.3.999"}',
                                     b'{"metadata":[1]}', b'{"status":"\xff"}', self.g.malformed_json()[:5000] or b"x",
                                     b'{"metadata":{"a":"\\u0000"}}'])
            # a malformed_json sample can be a valid object with unknown fields only: harmless, still a heartbeat
            name = "heartbeat_good_invalid"
        else:
            roll = self.r.random()
            if roll < 0.3:
                payload = b""
            elif roll < 0.6:
                body = {}
                for _ in range(self.r.randint(0, 4)):
                    body[self.r.choice(["status", "firmware_version", "ip_address", "metadata", "device_id", "x"])] = \
                        self.r.choice([self.g.scalar(), "error", "online", self.g.weird_valid_text(),
                                       self.g.overlong(65, 3000)])
                payload = json.dumps(body).encode()
            elif roll < 0.8:
                payload = self.g.malformed_json()
            elif roll < 0.9:
                payload = b"{" + b'"k":1,' * self.r.choice([5000, 10000, 200000]) + b'"e":0}'
            else:
                payload = bytes(self.r.getrandbits(8) for _ in range(self.r.randint(1, 3000)))
            name = "heartbeat"
        return MqttCase(name, "MQTT heartbeat", f"{self.p}/devices/{level}/heartbeat", payload,
                        self.r.choice([0, 1]), v5=self.r.random() < 0.8)

    def presence(self) -> MqttCase:
        level, good = self.id_level(allow_good=True)
        if good:
            payload = self.r.choice([b'{"state":"bogus"}', b'{"state":5}', b"OFFLINE", b"offline ", b" offline",
                                     b"offline\x00", b'{"state":["offline"]}', b'{"state":"offline\\u0000"}',
                                     b'{"state":"offline","session":"x"}', b'{"state":"offline","session":1.5}',
                                     b"\xff", b'{"state":"Offline"}', b"{", b'"offline"', b"disconnect\n"])
            name = "presence_good_invalid"
            retain = False
        else:
            payload = self.r.choice([b"online", b"offline", b"disconnect", b"", b'{"state":"online","session":3}',
                                     b'{"state":"offline","session":2}', b'{"state":"offline","reason":"disconnect"}',
                                     b'{"state":"online","session":' + str(2**63).encode() + b"}",
                                     b'{"state":"online","session":-9223372036854775808}', self.g.malformed_json(),
                                     b"x" * self.r.choice([10, 70000]), b'{"state":"online","session":1e400}'])
            name = "presence"
            retain = self.r.random() < 0.3
        return MqttCase(name, "MQTT presence", f"{self.p}/devices/{level}/presence", payload,
                        self.r.choice([0, 1]), retain=retain, v5=self.r.random() < 0.8)

    def unknown(self) -> MqttCase:
        topic = self.r.choice([f"{self.p}/devices/{uuid.uuid4()}/heartbeat/x", f"{self.p}/devices//heartbeat",
                               f"{self.p}/hardware//register", f"{self.p}/devices/{uuid.uuid4()}/unknown",
                               f"{self.p}/fleet/unknown", f"{self.p}", f"{self.p}/", f"/{self.p}/devices/x/heartbeat",
                               f"{self.p}/hardware/x/registration/extra", f"{self.p}//", "maestra2/devices/x/heartbeat",
                               f"{self.p}/devices/{uuid.uuid4()}/telemetry/metrics", f"{self.p}/hardware/x/y/register"])
        payload = self.r.choice([b"", b"{}", b"online", self.g.malformed_json(), b'{"name":"n","device_type":"t"}'])
        return MqttCase("unknown_topic", "MQTT unknown topic", topic, payload, self.r.choice([0, 1]))

    FAMILIES = {"mqtt_register": 40, "mqtt_heartbeat": 25, "mqtt_presence": 20, "mqtt_unknown": 15}

    def next_case(self, only: set[str] | None = None) -> MqttCase:
        fn = {"mqtt_register": self.register, "mqtt_heartbeat": self.heartbeat, "mqtt_presence": self.presence,
              "mqtt_unknown": self.unknown}
        table = [(fn[k], w) for k, w in self.FAMILIES.items() if not only or k in only]
        return self.r.choices(*zip(*table))[0]()


class MqttSide:
    """The hostile publishers (v5 and 3.1.1) and the observer of replies and statuses."""

    def __init__(self, state: State, host: str, port: int, prefix: str):
        self.s = state
        self.host, self.port, self.prefix = host, port, prefix
        self.lock = threading.Lock()
        self.pending: dict[str, tuple[float, MqttCase]] = {}     # reply topic -> (sent at, case)
        self.pending_v3: dict[str, list[tuple[float, MqttCase]]] = defaultdict(list)
        self.disconnects = Counter()
        self.pub_v5 = self._client(f"fuzz-pub5-{uuid.uuid4().hex[:8]}", 5)
        self.pub_v3 = self._client(f"fuzz-pub3-{uuid.uuid4().hex[:8]}", 311)
        self.observer = self._client(f"fuzz-obs-{uuid.uuid4().hex[:8]}", 5, observer=True)

    def _client(self, cid: str, proto: int, observer: bool = False) -> paho.Client:
        if proto == 5:
            c = paho.Client(client_id=cid, protocol=paho.MQTTv5)
        else:
            c = paho.Client(client_id=cid, protocol=paho.MQTTv311, clean_session=True)
        c.reconnect_delay_set(0.2, 2)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(2000)
        name = cid.split("-")[1]
        c.on_disconnect = lambda *a: self.disconnects.update([name])
        if observer:
            c.on_connect = self._observer_connected
            c.on_message = self._on_message
        if proto == 5:
            c.connect(self.host, self.port, 30, clean_start=True)
        else:
            c.connect(self.host, self.port, 30)
        c.loop_start()
        deadline = time.monotonic() + 10
        while not c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not c.is_connected():
            raise RuntimeError(f"MQTT client {cid} did not connect")
        return c

    def _observer_connected(self, client, *_a):
        client.subscribe([(f"fuzzreply/{self.s.args.seed}/#", 1), (f"{self.prefix}/hardware/+/registration", 1),
                          (f"{self.prefix}/devices/+/status", 1)])

    def _on_message(self, _c, _u, msg):
        try:
            self._handle(msg)
        except Exception:  # noqa: BLE001 - an observer must not die
            self.s.note("observer_error", "MQTT", traceback.format_exc(limit=2)[-200:], {})

    def _handle(self, msg) -> None:
        topic = msg.topic
        if topic.endswith("/status") and topic.startswith(f"{self.prefix}/devices/"):
            device_id = topic[len(self.prefix) + 9:-7]
            if device_id == self.s.good_id:
                self.s.good_stats["status_msgs"] += 1
                doc = _json(msg.payload)
                if not isinstance(doc, dict) or doc.get("status") != "online":
                    self.s.finding("good_device", "MQTT status", "status topic changed",
                                   {"topic": topic, "payload": show(msg.payload, 400),
                                    "should": "the good device's retained status stays online"})
            elif msg.payload and device_id not in self.s.accepted_ids and device_id not in self.s.deleted_ids:
                # a device announced that no accepted registration (seen so far) created: checked again at the end
                with self.s.lock:
                    self.s.status_seen = getattr(self.s, "status_seen", set())
                    self.s.status_seen.add(device_id)
            return
        case = None
        with self.lock:
            if topic in self.pending:
                case = self.pending.pop(topic)[1]
            elif topic.endswith("/registration"):
                hw = topic[len(self.prefix) + 10:-len("/registration")]
                if self.pending_v3.get(hw):
                    case = self.pending_v3[hw].pop(0)[1]
                    if not self.pending_v3[hw]:
                        del self.pending_v3[hw]
        if case is None:
            return
        self.judge_reply(case, msg.payload)

    def judge_reply(self, case: MqttCase, payload: bytes) -> None:
        doc = _json(payload)
        example = {"case": case.name, "topic": show(case.topic, 200), "payload": show(case.payload, 300),
                   "qos": case.qos, "v5": case.v5, "reply": show(payload, 400), "should": case.why or "no unavailable"}
        if not isinstance(doc, dict):
            self.s.count(case.route, "reply:garbled")
            self.s.finding("mqtt_unavailable", case.route, "unparseable reply", example)
            return
        err = doc.get("error")
        self.s.count(case.route, f"reply:{err or 'record'}")
        if err in ("unavailable", "internal"):
            self.s.finding("mqtt_unavailable", case.route, f"{case.name} -> {err}", example)
        elif err is None and "id" in doc:
            if case.expect == "reject":
                with self.s.lock:
                    self.s.accepted_ids.add(doc["id"])
                    self.s.invalid_accepted_ids[doc["id"]] = f"MQTT {case.name}: {case.why}"
                self.s.finding("accepted_invalid", case.route,
                               f"registered, hardware id {kind_of(str(doc.get('hardware_id', '')))}", example)
            else:
                hw = str(doc.get("hardware_id", ""))
                self.s.add_sacrificial(doc["id"], hw)

    def publish(self, case: MqttCase) -> None:
        client = self.pub_v5 if case.v5 else self.pub_v3
        props = None
        if case.v5 and case.reply_topic:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = case.reply_topic
            props.CorrelationData = os.urandom(self.s_rng_len())
        now = time.monotonic()
        if case.hw is not None:
            with self.s.lock:
                if len(self.s.hw_cases[case.hw]) < 5:
                    self.s.hw_cases[case.hw].append(f"MQTT {case.name} qos{case.qos} v{'5' if case.v5 else '3'} "
                                                    f"reply_topic={case.reply_topic} payload={show(case.payload, 100)}")
        if case.route == "MQTT register":
            with self.lock:
                if case.reply_topic:
                    self.pending[case.reply_topic] = (now, case)
                elif case.hw is not None:
                    self.pending_v3[case.hw].append((now, case))
        try:
            info = client.publish(case.topic, case.payload, qos=case.qos, retain=case.retain, properties=props)
            outcome = "sent" if info.rc == paho.MQTT_ERR_SUCCESS else f"rc{info.rc}"
        except (ValueError, TypeError) as exc:
            outcome = f"client_refused:{type(exc).__name__}"
            with self.lock:
                if case.reply_topic:
                    self.pending.pop(case.reply_topic, None)
        self.s.count(case.route, outcome)

    @staticmethod
    def s_rng_len() -> int:
        return random.choice([0, 8, 16, 1000])

    def expire(self, older_than: float) -> None:
        """Registrations without a reply after `older_than` seconds."""
        now = time.monotonic()
        with self.lock:
            stale = [(t, c) for t, c in self.pending.values() if now - t > older_than]
            self.pending = {k: v for k, v in self.pending.items() if now - v[0] <= older_than}
            for hw in list(self.pending_v3):
                keep = [(t, c) for t, c in self.pending_v3[hw] if now - t <= older_than]
                stale += [(t, c) for t, c in self.pending_v3[hw] if now - t > older_than]
                if keep:
                    self.pending_v3[hw] = keep
                else:
                    del self.pending_v3[hw]
        for _, case in stale:
            self.s.count(case.route, "reply:none")
            if case.qos == 1:
                self.s.note("mqtt_no_reply", case.route, case.name,
                            {"topic": show(case.topic, 200), "payload": show(case.payload, 200), "v5": case.v5,
                             "should": "every registration is answered (docs/protocol.md)"})

    def close(self) -> None:
        for c in (self.pub_v5, self.pub_v3, self.observer):
            try:
                c.disconnect()
                c.loop_stop()
            except Exception:  # noqa: BLE001
                pass


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


# --- the good device ----------------------------------------------------------------------------------------


class GoodDevice:
    """Registered over HTTP; heartbeats over HTTP (every 2 s) and MQTT (every 5 s) on a
    connection with a will and a birth; must stay online throughout."""

    def __init__(self, state: State, base_url: str, mqtt_host: str, mqtt_port: int, prefix: str,
                 token: str | None, seed: int):
        self.s = state
        self.url = base_url
        self.token = token
        self.prefix = prefix
        self.http = requests.Session()
        self.http.trust_env = False
        hw = f"fuzz-good-{seed}-{uuid.uuid4().hex[:6]}"
        r = self.http.post(self.url + "/devices/register", json={
            "name": "the good device", "device_type": "esp32", "hardware_id": hw,
            "firmware_version": "1.0.0", "ip_address": "10.1.2.3"}, timeout=10)
        if r.status_code != 201:
            raise RuntimeError(f"the good device could not register: {r.status_code} {r.text[:300]}")
        self.id = r.json()["id"]
        state.good_id, state.good_hw = self.id, hw
        state.accepted_ids.add(self.id)
        self.session = int(time.time())
        self.mqtt = paho.Client(client_id=self.id, protocol=paho.MQTTv311, clean_session=True)
        self.mqtt.will_set(f"{prefix}/devices/{self.id}/presence",
                           json.dumps({"state": "offline", "session": self.session}), qos=1, retain=True)
        self.mqtt_disconnects = 0
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.connect(mqtt_host, mqtt_port, 20)
        self.mqtt.loop_start()
        deadline = time.monotonic() + 10
        while not self.mqtt.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = self.mqtt.publish(f"{prefix}/devices/{self.id}/presence",
                                 json.dumps({"state": "online", "session": self.session}), qos=1, retain=True)
        info.wait_for_publish(5)
        self.threads: list[threading.Thread] = []
        self.closing = False

    def _on_disconnect(self, *_a):
        if not self.closing:
            self.mqtt_disconnects += 1
            self.s.finding("good_device", "MQTT good device", "connection lost",
                           {"should": "the good device's MQTT connection is never dropped"})

    def start(self) -> None:
        for fn in (self._http_loop, self._mqtt_loop, self._check_loop):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)

    def _post_heartbeat(self) -> requests.Response:
        """One heartbeat on the keep-alive session. A request that meets the server's
        keep-alive close (idle 2 s) in the same instant is aborted unanswered; it is sent
        again once on a fresh connection, as RFC 9112 section 9.3.1 allows (as harness.py does)."""
        try:
            return self.http.post(self.url + "/devices/heartbeat", json={"device_id": self.id}, timeout=10)
        except requests.ConnectionError as exc:
            if isinstance(exc, requests.Timeout) or not (exc.args and isinstance(exc.args[0], urllib3.exceptions.ProtocolError)):
                raise
            self.s.good_stats["http_retries"] = self.s.good_stats.get("http_retries", 0) + 1
            return self.http.post(self.url + "/devices/heartbeat", json={"device_id": self.id}, timeout=10)

    def _http_loop(self) -> None:
        while not self.s.stop.wait(1.5):
            t0 = time.monotonic()
            try:
                r = self._post_heartbeat()
                dt = time.monotonic() - t0
                self.s.good_stats["http_heartbeats"] += 1
                self.s.good_stats["http_latency"].append(dt)
                doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
                if r.status_code != 200 or not isinstance(doc, dict) or doc.get("status") != "online":
                    self.s.finding("good_device", "HTTP good heartbeat", f"answer {r.status_code}",
                                   {"answer": r.text[:300], "should": "200 with status online"})
                elif dt > 3.0:
                    self.s.finding("good_device", "HTTP good heartbeat", "slow answer (> 3 s)",
                                   {"elapsed_s": round(dt, 2), "should": "answered promptly"})
            except requests.RequestException as exc:
                self.s.finding("good_device", "HTTP good heartbeat", type(exc).__name__,
                               {"error": str(exc)[:300], "should": "200 with status online"})

    def _mqtt_loop(self) -> None:
        while not self.s.stop.wait(5.0):
            try:
                info = self.mqtt.publish(f"{self.prefix}/devices/{self.id}/heartbeat", b"", qos=1)
                info.wait_for_publish(5)
                if not info.is_published():
                    self.s.finding("good_device", "MQTT good heartbeat", "not acknowledged within 5 s", {})
                self.s.good_stats["mqtt_heartbeats"] += 1
            except (RuntimeError, ValueError) as exc:
                self.s.finding("good_device", "MQTT good heartbeat", type(exc).__name__, {"error": str(exc)[:200]})

    def _check_loop(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        while not self.s.stop.wait(5.0):
            try:
                r = self.http.get(f"{self.url}/devices/{self.id}", headers=headers, timeout=10)
                self.s.good_stats["gets"] += 1
                doc = r.json() if r.status_code == 200 else None
                if not isinstance(doc, dict) or doc.get("status") != "online":
                    self.s.finding("good_device", "GET good device", f"answer {r.status_code}",
                                   {"answer": r.text[:300], "should": "200, status online"})
                elif doc.get("firmware_version") != "1.0.0" or doc.get("ip_address") != "10.1.2.3" \
                        or doc.get("name") != "the good device":
                    self.s.finding("good_device", "GET good device", "record changed",
                                   {"answer": r.text[:400], "should": "name, firmware_version, ip_address unchanged"})
            except (requests.RequestException, ValueError) as exc:
                self.s.finding("good_device", "GET good device", type(exc).__name__, {"error": str(exc)[:300]})

    def close(self) -> None:
        self.closing = True
        for t in self.threads:
            t.join(timeout=15)
        try:
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
        except Exception:  # noqa: BLE001
            pass
        self.http.close()


# --- RSS, crash, database, log ------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def rss_loop(state: State, pid: int, proc_alive: Callable[[], bool], describe_exit: Callable[[], str]) -> None:
    over_reported = False
    while not state.stop.is_set():
        kb = rss_kb(pid)
        if kb is None or not proc_alive():
            state.crashed = describe_exit()
            state.finding("crash", "service", "the service process died", {"exit": state.crashed})
            state.stop.set()
            return
        state.rss.append((time.time() - state.started, kb))
        now = time.monotonic()
        with state.lock:
            state.recent = [(t, n) for t, n in state.recent if now - t < 1.5]
            window = [n for _, n in state.recent] + list(state.inflight.values())
        if len(state.rss) > 1 and kb - state.rss[-2][1] > 8 * 1024:
            state.rss_jumps.append({"at_s": round(state.rss[-1][0], 1), "from_mb": round(state.rss[-2][1] / 1024, 1),
                                    "to_mb": round(kb / 1024, 1),
                                    "requests_in_that_second": dict(Counter(window).most_common(8))})
        if kb > state.rss_abort_kb:
            state.finding("rss_limit", "service", f"RSS over the safety ceiling: run stopped early",
                          {"rss_mb": round(kb / 1024, 1), "at_s": round(time.time() - state.started, 1),
                           "should": f"the run stops at --rss-abort-mb {state.rss_abort_kb // 1024} to protect the machine"})
            state.aborted = f"RSS {kb // 1024} MB over --rss-abort-mb"
            state.stop.set()
            return
        if kb > state.rss_limit_kb and not over_reported:
            over_reported = True
            state.finding("rss_limit", "service", f"RSS over {state.rss_limit_kb // 1024} MB",
                          {"rss_mb": round(kb / 1024, 1), "at_s": round(time.time() - state.started, 1)})
        time.sleep(1.0)


def populate(psql, database_url: str, n: int, meta_bytes: int, seed: int) -> None:
    """N devices written straight into the table (offline, nothing to publish), so
    that GET /devices has a big list to build."""
    if n <= 0:
        return
    pad = "m" * meta_bytes
    psql(database_url, f"""
        INSERT INTO devices (name, device_type, hardware_id, metadata, status, connected, last_seen,
                             status_changed_at, status_reason, created_at, updated_at, status_seq, published_seq)
        SELECT 'populated ' || g, 'bulk', 'fuzz-pop-{seed}-' || g, jsonb_build_object('pad', '{pad}'),
               'offline', false, now(), now(), 'registered', now(), now(), 1, 1
        FROM generate_series(1, {n}) AS g""", timeout=300)


def check_database(state: State, psql, database_url: str) -> dict:
    rows = psql(database_url, "SELECT id::text, hardware_id, length(hardware_id), status FROM devices "
                              "WHERE hardware_id NOT LIKE 'fuzz-pop-%'", timeout=120)
    populated = psql(database_url, "SELECT count(*) FROM devices WHERE hardware_id LIKE 'fuzz-pop-%'")[0][0]
    ids = {r[0] for r in rows}
    unknown = [r for r in rows if r[0] not in state.accepted_ids]
    from_invalid = [r for r in rows if r[0] in state.invalid_accepted_ids]
    bad_hw = [r for r in rows if int(r[2]) > MAX_HW or is_blank(r[1]) or any(ord(c) < 0x20 or ord(c) == 0x7f for c in r[1])]
    known_sql = ",".join(f"'{i}'" for i in sorted(state.accepted_ids - set(state.invalid_accepted_ids))) or "NULL"
    hist_unknown = int(psql(database_url,
                            f"SELECT count(*) FROM device_status_history h JOIN devices d ON d.id = h.device_id "
                            f"WHERE d.hardware_id NOT LIKE 'fuzz-pop-%' AND h.device_id NOT IN ({known_sql})")[0][0])
    good_history = psql(database_url, f"SELECT coalesce(from_status,'-'), to_status, reason FROM device_status_history "
                                      f"WHERE device_id = '{state.good_id}' ORDER BY id") if state.good_id else []
    blocked = [r[0] for r in psql(database_url, "SELECT hardware_id FROM blocked_hardware_ids")]
    blocked_unexpected = [b for b in blocked if b not in state.blocked_ok]
    blocked_bad = [b for b in blocked if len(b) > MAX_HW or is_blank(b) or any(ord(c) < 0x20 for c in b)]
    unknown_by_request = Counter((state.hw_cases.get(r[1]) or ["(no request recorded with this hardware id)"])[0]
                                 .split(": ", 1)[0] for r in unknown)
    result = {
        "rows_without_an_accepted_request_by_request": dict(unknown_by_request.most_common(20)),
        "devices_total": len(rows) + int(populated), "devices_populated": int(populated),
        "devices_from_traffic": len(rows), "accepted_registrations": len(state.accepted_ids),
        "rows_without_an_accepted_request": len(unknown),
        "rows_from_requests_that_should_have_been_refused": len(from_invalid),
        "rows_with_invalid_hardware_id": len(bad_hw),
        "history_rows_of_those_devices": hist_unknown,
        "good_device_history": [" -> ".join(r[:2]) + f" ({r[2]})" for r in good_history],
        "blocked_rows": len(blocked), "blocked_rows_unexpected": len(blocked_unexpected),
        "blocked_rows_invalid": len(blocked_bad),
    }
    for r in unknown[:5]:
        state.finding("db_rows", "database", "device row without an accepted request",
                      {"id": r[0], "hardware_id": show(r[1], 80), "hardware_id_chars": int(r[2]),
                       "sent_with_this_hardware_id": state.hw_cases.get(r[1], []),
                       "generated_by": ORIGINS.get(r[1]),
                       "should": "no row written by a refused request"})
    for r in from_invalid[:20]:
        state.finding("db_rows", "database", "device row written by a request that should have been refused",
                      {"id": r[0], "hardware_id": show(r[1], 80), "hardware_id_chars": int(r[2]),
                       "request": state.invalid_accepted_ids[r[0]]})
    for r in bad_hw[:10]:
        state.finding("db_rows", "database", "device row with an invalid hardware id",
                      {"id": r[0], "hardware_id": show(r[1], 80), "hardware_id_chars": int(r[2]),
                       "should": "hardware ids are 1-128 characters, not blank, no control characters"})
    for b in (blocked_unexpected + blocked_bad)[:10]:
        state.finding("db_rows", "database", "blocked_hardware_ids row unexpected or invalid",
                      {"hardware_id": show(b, 80), "chars": len(b)})
    if len(good_history) != 1:
        state.finding("good_device", "database", "good device history changed",
                      {"history": result["good_device_history"], "should": "one row: registered"})
    result["device_ids_in_table"] = len(ids)
    return result


def scan_log(path: Path) -> dict:
    levels = Counter()
    events: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, str] = {}
    if not path or not path.exists():
        return {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            lvl = doc.get("level", "?")
            levels[lvl] += 1
            if lvl in ("warn", "error"):
                ev = doc.get("event", "?")
                events[lvl][ev] += 1
                examples.setdefault(ev, line[:400])
    return {"levels": dict(levels), "warn_events": dict(events["warn"]), "error_events": dict(events["error"]),
            "examples": examples}


# --- main ------------------------------------------------------------------------------------------------------------


class RateLimiter:
    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        with self.lock:
            now = time.monotonic()
            self.next = max(self.next + self.interval, now - 1.0)
            delay = self.next - now
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=600, help="seconds of hostile traffic (default 600)")
    ap.add_argument("--rate", type=float, default=120, help="hostile requests+messages per second, at most (120)")
    ap.add_argument("--workers", type=int, default=6, help="concurrent hostile senders (6)")
    ap.add_argument("--mqtt-share", type=float, default=0.3, help="share of hostile traffic over MQTT (0.3)")
    ap.add_argument("--binary", default=str(REPO / "build" / "fleet-manager"))
    ap.add_argument("--rss-limit-mb", type=float, default=150)
    ap.add_argument("--rss-abort-mb", type=float, default=4096,
                    help="stop the run early when the service's RSS passes this (4096), to protect the machine")
    ap.add_argument("--max-body-mb", type=int, default=32, help="largest oversize body sent (32 MB)")
    # The defaults are the limits docs/http.md states (414 / 431).
    ap.add_argument("--path-limit", type=int, default=1024, help="decoded paths longer than this must get 414 (1024)")
    ap.add_argument("--header-count-limit", type=int, default=64, help="more header fields must get 431 (64)")
    ap.add_argument("--header-bytes-limit", type=int, default=16384,
                    help="a header longer than this must get 431 (or cpp-httplib's 400) (16384)")
    ap.add_argument("--populate", type=int, default=5000, help="devices written into the table before the run (5000)")
    ap.add_argument("--populate-meta-bytes", type=int, default=2000)
    ap.add_argument("--report", default="fuzz-report.json")
    ap.add_argument("--keep", action="store_true", help="keep the temp folders (logs, database)")
    ap.add_argument("--attach-url", help="attach to a running service, e.g. http://127.0.0.1:8080 (no own stack)")
    ap.add_argument("--attach-mqtt", default="127.0.0.1:1883")
    ap.add_argument("--attach-pid", type=int, help="the running service's pid (RSS, crash)")
    ap.add_argument("--attach-database-url", help="its database (the after-run check)")
    ap.add_argument("--admin-token", default=None)
    ap.add_argument("--topic-prefix", default="maestra")
    ap.add_argument("--only", help="comma-separated families to run (default all): "
                    + ",".join([*HttpFuzzer.FAMILIES, *MqttFuzzer.FAMILIES]))
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if only:
        unknown_families = only - set(HttpFuzzer.FAMILIES) - set(MqttFuzzer.FAMILIES)
        if unknown_families:
            ap.error(f"unknown families {sorted(unknown_families)}")
        http_only = only & set(HttpFuzzer.FAMILIES) or None
        mqtt_only = only & set(MqttFuzzer.FAMILIES) or None
        args.mqtt_share = 0.0 if not mqtt_only else (1.0 if not http_only else args.mqtt_share)
    else:
        http_only = mqtt_only = None

    import harness  # tests/integration/harness.py
    harness.raise_nofile_limit()
    state = State(args, args.rss_limit_mb)
    stack: list[Callable[[], None]] = []
    workdir = Path(tempfile.mkdtemp(prefix="maestra-fuzz-"))
    log_path: Path | None = None
    token = args.admin_token
    rc = 1
    try:
        if args.attach_url:
            u = urllib.parse.urlsplit(args.attach_url)
            http_host, http_port = u.hostname, u.port or 80
            mhost, _, mport = args.attach_mqtt.rpartition(":")
            mqtt_host, mqtt_port = mhost or "127.0.0.1", int(mport)
            database_url = args.attach_database_url
            pid = args.attach_pid
            alive = (lambda: pid is None or Path(f"/proc/{pid}").exists())
            describe_exit = lambda: f"pid {pid} is gone"  # noqa: E731
        else:
            token = token or "fuzz-admin-token-" + uuid.uuid4().hex
            print(f"[fuzz] starting Postgres, Mosquitto and {args.binary} in {workdir}", flush=True)
            pg = harness.PostgresCluster().start()
            stack.append(pg.cleanup if not args.keep else pg.stop)
            broker = harness.MosquittoBroker(workdir / "mosquitto").start()
            stack.append(broker.stop)
            factory = harness.ServiceFactory(pg, broker, workdir, binary=Path(args.binary))
            stack.append(factory.close)
            database_url = pg.new_database("fuzz")
            env = dict(MAESTRA_ADMIN_TOKEN=token, MAESTRA_AUTH_FAILURE_LIMIT=0, MAESTRA_LOG_FORMAT="json",
                       MAESTRA_TOPIC_PREFIX=args.topic_prefix)
            service = factory(database_url=database_url, name="fuzz-target", **env)
            if args.populate:
                service.stop()
                print(f"[fuzz] writing {args.populate} devices into the table", flush=True)
                populate(harness.psql, database_url, args.populate, args.populate_meta_bytes, args.seed)
                service.start(timeout=60)
            state.populated = args.populate
            http_host, http_port = harness.HOST, service.port
            mqtt_host, mqtt_port = broker.host, broker.port
            pid = service.pid
            log_path = service.log_path
            alive = service.is_running
            describe_exit = lambda: f"exit status {service.returncode}; log tail:\n{service.log_tail(30)}"  # noqa: E731
        base_url = f"http://{http_host}:{http_port}"
        print(f"[fuzz] service {base_url} pid {pid}, broker {mqtt_host}:{mqtt_port}, seed {args.seed}, "
              f"{args.duration:g} s at <= {args.rate:g}/s", flush=True)

        if pid:
            threading.Thread(target=rss_loop, args=(state, pid, alive, describe_exit), daemon=True).start()
        mqtt = MqttSide(state, mqtt_host, mqtt_port, args.topic_prefix)
        stack.append(mqtt.close)
        good = GoodDevice(state, base_url, mqtt_host, mqtt_port, args.topic_prefix, token, args.seed)
        stack.append(good.close)
        good.start()

        master = random.Random(args.seed)
        limiter = RateLimiter(args.rate)
        end = time.monotonic() + args.duration

        # a few devices to aim valid-id traffic at
        seed_http = HttpFuzzer(state, random.Random(master.random()), Gen(random.Random(1), f"s{args.seed}"), token,
                               args.path_limit, args.max_body_mb, args.header_count_limit, args.header_bytes_limit)
        for _ in range(20):
            hw = seed_http.g.valid_hw()
            case = seed_http.simple("register_valid", "POST /devices/register", "POST", "/devices/register",
                                    json.dumps(seed_http.reg_body(hw)).encode(), expect="accept", admin=False, hw=hw,
                                    after=seed_http.after_register)
            ans = raw_http(http_host, http_port, case.pieces())
            judge_http(state, case, ans)
            case.after(case, ans)

        def worker(index: int) -> None:
            rng = random.Random(master.random() + index)
            gen = Gen(random.Random(rng.random()), f"w{args.seed}x{index}")
            hf = HttpFuzzer(state, rng, gen, token, args.path_limit, args.max_body_mb, args.header_count_limit,
                            args.header_bytes_limit)
            mf = MqttFuzzer(state, rng, gen, args.topic_prefix, hf)
            while time.monotonic() < end and not state.stop.is_set():
                if not limiter.wait(state.stop):
                    break
                try:
                    if rng.random() < args.mqtt_share:
                        if rng.random() < 0.02 and not only:  # a registration race over MQTT and HTTP at once
                            hw = gen.valid_hw()
                            for _ in range(2):
                                mqtt.publish(MqttCase("register_race", "MQTT register",
                                                      f"{args.topic_prefix}/hardware/{hw}/register",
                                                      json.dumps({"name": "race", "device_type": "t"}).encode(), 1,
                                                      reply_topic=f"fuzzreply/{args.seed}/race-{uuid.uuid4().hex}",
                                                      hw=hw))
                            case = hf.simple("register_race", "POST /devices/register", "POST", "/devices/register",
                                             json.dumps(hf.reg_body(hw)).encode(), admin=False, hw=hw,
                                             after=hf.after_race)
                            ans = raw_http(http_host, http_port, case.pieces())
                            judge_http(state, case, ans)
                            case.after(case, ans)
                        else:
                            mqtt.publish(mf.next_case(mqtt_only))
                    else:
                        burst = rng.random() < 0.01 and (not http_only or "register" in http_only)
                        cases = hf.burst_register_conflict() if burst else [hf.next_case(http_only)]
                        results: list[tuple[HttpCase, Answer]] = []

                        def run(c: HttpCase) -> None:
                            key = id(c)
                            state.inflight[key] = f"{c.route}: {c.name}"
                            try:
                                results.append((c, raw_http(http_host, http_port, c.pieces(),
                                                            half_close=c.half_close, pace=c.pace)))
                            finally:
                                label = state.inflight.pop(key, "?")
                                with state.lock:
                                    state.recent.append((time.monotonic(), label))
                        threads = [threading.Thread(target=run, args=(c,)) for c in cases[1:]]
                        for t in threads:
                            t.start()
                        run(cases[0])
                        for t in threads:
                            t.join(timeout=REQUEST_TIMEOUT + 5)
                        for c, a in results:
                            judge_http(state, c, a)
                            if c.after:
                                c.after(c, a)
                        if len(cases) > 1:
                            created = [a for _, a in results if a.status == 201]
                            if len(created) != 1:
                                state.finding("accepted_invalid", "POST /devices/register",
                                              f"registration race: {len(created)} created",
                                              {"answers": [a.status for _, a in results],
                                               "should": "exactly one 201, the others 409"})
                except Exception:  # noqa: BLE001 - a bug of the fuzzer is reported, not fatal
                    state.note("fuzzer_error", "fuzzer", traceback.format_exc(limit=3)[-300:], {})

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.workers)]
        for t in threads:
            t.start()
        last_print = 0.0
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(1.0)
                mqtt.expire(30.0)
                if time.monotonic() - last_print >= 30:
                    last_print = time.monotonic()
                    sent = sum(sum(c.values()) for c in state.counts.values())
                    rss = state.rss[-1][1] / 1024 if state.rss else 0
                    nf = sum(f["count"] for f in state.findings.values())
                    print(f"[fuzz] t={time.time() - state.started:5.0f}s sent={sent} rss={rss:.1f}MB findings={nf}",
                          flush=True)
        except KeyboardInterrupt:  # Ctrl-C: stop sending, still check and report
            state.aborted = state.aborted or f"interrupted at {time.time() - state.started:.0f} s"
            state.stop.set()
        for t in threads:
            t.join(timeout=30)
        # let the last replies and flushes arrive, then check
        time.sleep(3.0)
        mqtt.expire(0.0)
        state.stop.set()
        good.close()
        time.sleep(1.5)
        if state.crashed is None and pid and not alive():
            state.crashed = describe_exit()
            state.finding("crash", "service", "the service process died", {"exit": state.crashed})
        db = {}
        if database_url:
            try:
                db = check_database(state, harness.psql, database_url)
            except Exception as exc:  # noqa: BLE001
                db = {"error": str(exc)[:500]}
        logscan = scan_log(log_path) if log_path else {}
        for ev, n in (logscan.get("error_events") or {}).items():
            state.finding("log_error", "service log", f"error event {ev} x{n}",
                          {"line": logscan["examples"].get(ev, "")})
        rc = report(state, args, db, logscan, base_url, pid, log_path, workdir)
    finally:
        state.stop.set()
        for fn in reversed(stack):
            try:
                fn()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        if not args.keep:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


def report(state: State, args, db: dict, logscan: dict, base_url: str, pid, log_path, workdir) -> int:
    rss = [kb for _, kb in state.rss]
    rss_info = {"samples": len(rss), "max_mb": round(max(rss) / 1024, 1) if rss else None,
                "p50_mb": round(statistics.median(rss) / 1024, 1) if rss else None,
                "first_mb": round(rss[0] / 1024, 1) if rss else None,
                "last_mb": round(rss[-1] / 1024, 1) if rss else None,
                "limit_mb": args.rss_limit_mb}
    lat = state.good_stats["http_latency"]
    good = {"id": state.good_id, "http_heartbeats": state.good_stats["http_heartbeats"],
            "http_latency_p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
            "http_latency_max_ms": round(max(lat) * 1000, 1) if lat else None,
            "mqtt_heartbeats": state.good_stats["mqtt_heartbeats"], "status_messages": state.good_stats["status_msgs"],
            "record_checks": state.good_stats["gets"],
            "http_resent_after_keepalive_close": state.good_stats.get("http_retries", 0)}
    by_kind = Counter()
    for f in state.findings.values():
        by_kind[f["kind"]] += f["count"]
    notes_by_kind = Counter()
    for f in state.notes.values():
        notes_by_kind[f["kind"]] += f["count"]
    totals = {route: sum(c.values()) for route, c in state.counts.items()}
    doc = {
        "command": " ".join([sys.executable, *sys.argv]),
        "seed": args.seed, "duration_s": args.duration, "rate_cap": args.rate, "service": base_url, "pid": pid,
        "binary": args.binary if not args.attach_url else None,
        "binary_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(Path(args.binary).stat().st_mtime))
        if not args.attach_url and Path(args.binary).exists() else None,
        "crashed": state.crashed, "aborted": state.aborted, "rss": rss_info, "good_device": good,
        "sent_per_route": totals, "answers_per_route": {r: dict(c) for r, c in state.counts.items()},
        "answers_per_case": {r: dict(c) for r, c in sorted(state.case_counts.items())},
        "findings_by_kind": dict(by_kind), "notes_by_kind": dict(notes_by_kind),
        "findings": sorted(state.findings.values(), key=lambda f: (f["kind"], f["route"], -f["count"])),
        "notes": sorted(state.notes.values(), key=lambda f: (f["kind"], f["route"], -f["count"])),
        "rss_jumps_over_8mb": state.rss_jumps[:100],
        "database": db, "service_log": {k: v for k, v in logscan.items() if k != "examples"},
        "rss_series_mb": [(round(t, 1), round(kb / 1024, 1)) for t, kb in state.rss[:: max(1, len(state.rss) // 300)]],
    }
    Path(args.report).write_text(json.dumps(doc, indent=2, ensure_ascii=False))

    print("\n=== fuzz_service summary ===")
    print(f"service {base_url} (pid {pid}), seed {args.seed}, {args.duration:g} s, rate cap {args.rate:g}/s")
    print(f"{'route / topic':34} {'sent':>7}  answers")
    for route in sorted(state.counts):
        c = state.counts[route]
        top = ", ".join(f"{k}:{v}" for k, v in c.most_common(8))
        print(f"{route:34} {totals[route]:7d}  {top}")
    print(f"{'TOTAL':34} {sum(totals.values()):7d}")
    print(f"\nRSS: max {rss_info['max_mb']} MB, p50 {rss_info['p50_mb']} MB, first {rss_info['first_mb']} MB, "
          f"last {rss_info['last_mb']} MB ({rss_info['samples']} samples; limit {args.rss_limit_mb:g} MB)")
    jump_causes = Counter()
    for j in state.rss_jumps:
        for name in j["requests_in_that_second"]:
            jump_causes[name] += 1
    if state.rss_jumps:
        print(f"RSS jumps of more than 8 MB in a second: {len(state.rss_jumps)}; requests in flight around them: "
              f"{dict(jump_causes.most_common(8))}")
    print(f"good device {good['id']}: {good['http_heartbeats']} HTTP heartbeats (p50 {good['http_latency_p50_ms']} ms, "
          f"max {good['http_latency_max_ms']} ms), {good['mqtt_heartbeats']} MQTT heartbeats, "
          f"{good['status_messages']} status messages, {good['record_checks']} record checks")
    print(f"crash: {state.crashed or 'none'}" + (f"; run stopped early: {state.aborted}" if state.aborted else ""))
    print(f"database: {json.dumps({k: v for k, v in db.items() if k != 'good_device_history'})}")
    print(f"          good device history: {db.get('good_device_history')}")
    if logscan:
        print(f"service log: levels {logscan.get('levels')}, errors {logscan.get('error_events')}")
    print(f"\nfindings by kind: {dict(by_kind) or 'none'}")
    for f in doc["findings"]:
        ex = f["examples"][0] if f["examples"] else {}
        print(f"  [{f['kind']}] {f['route']}: {f['signature']} (x{f['count']})")
        for key in ("request", "topic", "payload", "answer_status", "answer_error", "answer_body", "reply", "should",
                    "hardware_id", "request", "exit", "answers", "history", "line", "rss_mb"):
            if key in ex and ex[key] not in (None, ""):
                print(f"      {key}: {show(str(ex[key]), 300)}")
    print(f"notes by kind (not failures): {dict(notes_by_kind) or 'none'}")
    for f in doc["notes"][:30]:
        print(f"  ({f['kind']}) {f['route']}: {f['signature']} (x{f['count']})")
    print(f"\nreport: {Path(args.report).resolve()}")
    if args.keep:
        print(f"kept: {workdir} (service log {log_path})")
    return 1 if by_kind else 0


if __name__ == "__main__":
    sys.exit(main())
