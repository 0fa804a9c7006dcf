"""Test whether the web dashboard shows the live fleet in a real browser.

Starts a private Mosquitto broker (the test stops it to see the banner, so the
session broker is left alone) and a fleet-manager serving examples/dashboard at /,
then runs tests/e2e/dashboard.e2e.mjs with node: headless Debian Chromium driven by
playwright-core checks the hint shown when MQTT.js is missing (never "broker
down"), registers, kills, patches and deletes devices and checks the page after
each step (problems first, the offline-since cell, a sort kept across a reload,
the location as text), then kills the service and stops the broker and checks
the banners. The screenshot lands in tests/artifacts/dashboard.png.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import REPO

DASHBOARD = REPO / "examples" / "dashboard"
E2E_SCRIPT = REPO / "tests" / "e2e" / "dashboard.e2e.mjs"
ARTIFACTS = Path(os.environ.get("MAESTRA_ARTIFACTS") or REPO / "tests" / "artifacts")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def require_tools() -> str:
    """node, Chromium and the dashboard's npm packages must be there: the scripts
    install them, so their absence is a failure, not a skip."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Debian package nodejs; scripts/test.sh installs it)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (Debian package chromium; scripts/test.sh installs it)")
    missing = [name for name in ("mqtt", "playwright-core")
               if not (DASHBOARD / "node_modules" / name / "package.json").exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed in {DASHBOARD}/node_modules: "
                    f"run `npm ci` in examples/dashboard")
    return node


def test_dashboard_follows_the_fleet_in_a_browser(start_broker, start_service):
    node = require_tools()
    broker = start_broker()
    service = start_service(broker=broker, MAESTRA_WEB_ROOT=str(DASHBOARD))

    index = service.get("/")
    assert index.status_code == 200 and "Maestra Fleet" in index.text, index.text[:300]
    assert service.get("/node_modules/mqtt/dist/mqtt.min.js").status_code == 200

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    for stale in ARTIFACTS.glob("dashboard*.png"):
        stale.unlink()
    env = {
        **os.environ,
        "DASHBOARD_URL": f"{service.url}/?broker={broker.ws_url}",
        "API_URL": service.url,
        "MQTT_URL": f"mqtt://{broker.host}:{broker.port}",
        "MQTT_WS_URL": broker.ws_url,
        "BROKER_PID": str(broker.proc.pid),
        "SERVICE_PID": str(service.pid),
        "SCREENSHOT_PATH": str(screenshot),
        "CHROMIUM_PATH": CHROMIUM,
    }
    result = subprocess.run([node, str(E2E_SCRIPT)], env=env, cwd=str(REPO), capture_output=True,
                            text=True, timeout=240, check=False)
    output = f"--- node stdout ---\n{result.stdout}\n--- node stderr ---\n{result.stderr}"
    assert result.returncode == 0, f"dashboard e2e failed (exit {result.returncode})\n{output}"
    print(output)
    assert screenshot.exists() and screenshot.stat().st_size > 10_000, f"no screenshot at {screenshot}"
    assert not broker.is_running(), "the e2e test should have stopped the broker"
    assert not service.is_running(), "the e2e test should have killed fleet-manager"
