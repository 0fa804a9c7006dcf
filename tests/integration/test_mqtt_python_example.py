"""examples/python/mqtt_device.py, run as a real device process with Debian's
/usr/bin/python3 and python3-paho-mqtt: it registers over MQTT, connects with
its last will, publishes its birth and heartbeats. Killed with SIGKILL, the
broker publishes its will and the service marks it `offline` (reason `will`) on
its retained status topic within one second; stopped with SIGTERM it says a
clean goodbye (reason `disconnect`); started again with the same hardware id it
reuses its id from the conflict reply. This also proves the example works.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import pytest

from test_mqtt_common import (
    db_device,
    db_history,
    fleet,  # noqa: F401 - the fixture
    get_device,
    new_hardware_id,
    payload_json,
    presence_topic,
    retained_now,
    status_topic,
    ts,
    wait_status,
)
from harness import REPO, wait_until

EXAMPLE = REPO / "examples" / "python" / "mqtt_device.py"
WILL_LATENCY_LIMIT_S = 1.0


class DeviceProcess:
    """The example as a subprocess; its stdout lines are collected by a thread."""

    def __init__(self, broker, hardware_id: str, interval: float = 1.0):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(EXAMPLE), "--host", broker.host, "--port", str(broker.port),
             "--hardware-id", hardware_id, "--interval", str(interval), "--name", f"Example {hardware_id}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = 15.0) -> re.Match:
        def find():
            exited = self.proc.poll() is not None and not self._reader.is_alive()
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if exited:
                raise AssertionError(f"example exited with {self.proc.returncode}:\n{self.output()}")
            return None
        return wait_until(find, timeout=timeout, message=lambda: f"no line /{pattern}/ in:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


@pytest.fixture
def example_device(mosquitto, mqtt):
    started: list[tuple[DeviceProcess, str]] = []

    def start(hardware_id: str, **kwargs) -> DeviceProcess:
        device = DeviceProcess(mosquitto, hardware_id, **kwargs)
        started.append(device)
        return device

    yield start
    for device in started:
        device.stop()


def wait_example_online(device: DeviceProcess, svc, watcher) -> str:
    """The example registered, connected, published its birth and a heartbeat that the service applied."""
    device_id = device.wait_line(r"(?:registered as|using existing device) ([0-9a-f-]{36})").group(1)
    watcher.subscribe(status_topic(device_id))
    device.wait_line(r"connected; birth published")
    device.wait_line(r"heartbeat 1")
    wait_until(lambda: ts(get_device(svc, device_id)["last_seen"])
               > ts(get_device(svc, device_id)["created_at"]), timeout=10)
    wait_status(watcher, device_id, "online")
    return device_id


def test_example_killed_with_sigkill_is_offline_by_will_within_one_second(fleet, mqtt, example_device):
    """Test whether the Python example killed with SIGKILL is offline (reason will) on its status topic within 1 s."""
    svc = fleet()
    hw = new_hardware_id("py")
    watcher = mqtt()
    device = example_device(hw)
    device_id = wait_example_online(device, svc, watcher)
    record = get_device(svc, device_id)
    assert (record["hardware_id"], record["device_type"], record["firmware_version"]) == (hw, "raspberry_pi", "1.0.0")
    assert "python_version" in record["metadata"]

    start = len(watcher.messages)
    killed_at = time.monotonic()
    device.proc.send_signal(signal.SIGKILL)
    message, doc = wait_status(watcher, device_id, "offline", "will", start=start, timeout=10)
    latency = time.monotonic() - killed_at
    print(f"\nwill -> retained status latency: {latency * 1000:.1f} ms")
    assert latency < WILL_LATENCY_LIMIT_S, f"offline status after {latency:.3f} s"
    assert not message.retain  # a live message ...
    retained = retained_now(mqtt, status_topic(device_id))  # ... that is also the retained status
    assert [(payload_json(m)["status"], payload_json(m)["reason"]) for m in retained] == [("offline", "will")]
    assert db_device(svc, device_id)["status_reason"] == "will"
    assert get_device(svc, device_id)["status"] == "offline"
    mqtt().publish(presence_topic(device_id), b"", qos=1, retain=True)  # leave no retained will behind


def test_example_sigterm_says_disconnect_and_a_rerun_reuses_its_id(fleet, mqtt, example_device):
    """Test whether the Python example stopped with SIGTERM gives reason disconnect and a rerun reuses its id."""
    svc = fleet()
    hw = new_hardware_id("py")
    watcher = mqtt()
    device = example_device(hw)
    device_id = wait_example_online(device, svc, watcher)

    start = len(watcher.messages)
    device.proc.send_signal(signal.SIGTERM)
    assert device.proc.wait(timeout=10) == 0, device.output()
    device.wait_line(r"disconnected cleanly")
    wait_status(watcher, device_id, "offline", "disconnect", start=start)
    assert db_device(svc, device_id)["status_reason"] == "disconnect"

    # Started again with the same hardware id: the conflict reply gives it its id back.
    start = len(watcher.messages)
    again = example_device(hw)
    assert wait_example_online(again, svc, watcher) == device_id
    assert "already registered" in again.output()
    wait_status(watcher, device_id, "online", "heartbeat", start=start)
    assert svc.get(f"/devices?hardware_id={hw}").json()[0]["id"] == device_id
    assert [r for r in db_history(svc, device_id)] == [
        (None, "online", "registered"), ("online", "offline", "disconnect"), ("offline", "online", "heartbeat")]
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(timeout=10) == 0
    mqtt().publish(presence_topic(device_id), b"", qos=1, retain=True)
