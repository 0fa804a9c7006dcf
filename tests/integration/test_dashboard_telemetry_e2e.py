"""Test whether the web dashboard's device panel shows telemetry in a real browser:
the latest value of each metric, a chart of one metric over the last hour and
the recent events, read from the query routes (tests/e2e/telemetry.e2e.mjs,
headless Chromium). The panel's screenshot lands in tests/artifacts/telemetry-panel.png.
"""
from __future__ import annotations

import os
import subprocess

from test_dashboard_e2e import ARTIFACTS, CHROMIUM, DASHBOARD, require_tools

from harness import REPO

E2E_SCRIPT = REPO / "tests" / "e2e" / "telemetry.e2e.mjs"


def test_dashboard_panel_shows_latest_metrics_chart_and_events(start_broker, start_service):
    """Test whether a device's panel shows its latest metrics, a one-hour chart and its recent events."""
    node = require_tools()
    broker = start_broker()
    service = start_service(broker=broker, MAESTRA_WEB_ROOT=str(DASHBOARD))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "telemetry-panel.png"
    screenshot.unlink(missing_ok=True)
    env = {**os.environ, "DASHBOARD_URL": f"{service.url}/?broker={broker.ws_url}", "API_URL": service.url,
           "SCREENSHOT_PATH": str(screenshot), "CHROMIUM_PATH": CHROMIUM}
    result = subprocess.run([node, str(E2E_SCRIPT)], env=env, cwd=str(REPO), capture_output=True, text=True,
                            timeout=120, check=False)
    output = f"--- node stdout ---\n{result.stdout}\n--- node stderr ---\n{result.stderr}"
    assert result.returncode == 0, f"telemetry e2e failed (exit {result.returncode})\n{output}"
    assert screenshot.exists() and screenshot.stat().st_size > 5_000, f"no screenshot at {screenshot}"
