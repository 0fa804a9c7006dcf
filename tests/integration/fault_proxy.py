"""tests/integration/fault_proxy.py — a TCP proxy between the service and the
real broker that can cut connections on purpose (owned by the broker-fault
tests; it never alters or invents MQTT bytes, it only forwards or closes).

FaultProxy(target_port).start() listens on 127.0.0.1:<free port> (.port, .url)
and forwards every connection to 127.0.0.1:target_port. cut_after_connect(n,
delay) closes the next n connections `delay` seconds after they opened, the way
a broker that refuses a client right after its CONNACK looks to the client;
cut_open_connections() closes the ones open now.
"""
from __future__ import annotations

import socket
import threading
import time

from harness import HOST, free_port


class FaultProxy:
    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self._cuts: list[float] = []  # delays for the next connections
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self.connections = 0
        self.cut = 0

    @property
    def url(self) -> str:
        return f"tcp://{HOST}:{self.port}"

    def start(self) -> "FaultProxy":
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, self.port))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def cut_after_connect(self, count: int, delay: float) -> None:
        with self._lock:
            self._cuts = [delay] * count

    def cut_open_connections(self) -> None:
        """Close every connection open now (the listener stays)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                delay = self._cuts.pop(0) if self._cuts else None
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            if delay is not None:
                threading.Timer(delay, self._close_pair, args=(client, upstream)).start()

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            self.cut += 1
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._listener:
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass
        time.sleep(0.05)
