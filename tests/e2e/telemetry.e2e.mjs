// tests/e2e/telemetry.e2e.mjs — the dashboard's telemetry panel in headless
// Chromium (playwright-core): a device with metrics over the last half hour and
// events, sent through the HTTP routes; its detail panel must show the latest
// value of each metric, a chart of one metric over the last hour and the recent
// events. Run by tests/integration/test_dashboard_telemetry_e2e.py.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dashboardDir = path.resolve(here, '../../examples/dashboard');
const require = createRequire(path.join(dashboardDir, 'package.json'));
const { chromium } = require('playwright-core');

const DASHBOARD_URL = process.env.DASHBOARD_URL;
const API_URL = (process.env.API_URL || '').replace(/\/+$/, '');
const SCREENSHOT_PATH = path.resolve(process.env.SCREENSHOT_PATH || 'tests/artifacts/telemetry-panel.png');
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
if (!DASHBOARD_URL || !API_URL) {
  console.error('DASHBOARD_URL and API_URL are required');
  process.exit(2);
}

async function api(method, route, body) {
  const r = await fetch(`${API_URL}${route}`, { method, body: body && JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${route}: ${r.status} ${await r.text()}`);
  return r.json();
}

const pageErrors = [];
let browser;
try {
  const device = await api('POST', '/devices/register', {
    name: 'Telemetry panel probe', device_type: 'esp32', hardware_id: `e2e-telemetry-${Date.now()}`,
  });
  const now = Date.now();
  const points = [];
  for (let i = 0; i < 30; i++) {
    points.push({ device_id: device.id, metric_name: 'temperature', metric_value: 20 + (i % 7),
      unit: 'celsius', time: new Date(now - (30 - i) * 60000).toISOString() });
  }
  points.push({ device_id: device.id, metric_name: 'temperature', metric_value: 23.5, unit: 'celsius',
    time: new Date(now - 1000).toISOString() });
  points.push({ device_id: device.id, metric_name: 'zz_rssi', metric_value: -61, unit: 'dBm' });
  await api('POST', '/metrics/batch', points);
  await api('POST', '/events', { device_id: device.id, event_type: 'door_opened', severity: 'warning',
    message: 'front door' });

  mkdirSync(path.dirname(SCREENSHOT_PATH), { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  await page.goto(DASHBOARD_URL, { waitUntil: 'load' });
  const row = page.locator(`.row[data-device-id="${device.id}"]`);
  await row.waitFor({ timeout: 15000 });
  await row.click();
  const latest = page.locator('#latest-metrics');
  await latest.locator('dd').first().waitFor({ timeout: 10000 });
  const shown = (await latest.innerText()).replace(/\s+/g, ' ');
  if (!shown.includes('temperature') || !shown.includes('23.5 celsius') || !shown.includes('-61 dBm')) {
    throw new Error(`latest metrics show: ${shown}`);
  }
  await page.locator('#metric-chart polyline').waitFor({ state: 'attached', timeout: 10000 });
  const chartPoints = (await page.locator('#metric-chart polyline').getAttribute('points')).trim().split(/\s+/);
  if (chartPoints.length < 20) throw new Error(`the chart has ${chartPoints.length} points`);
  if (await page.locator('#metric-chart').isHidden()) throw new Error('the chart is hidden');
  const note = await page.locator('#chart-note').innerText();
  if (!note.includes('temperature')) throw new Error(`chart note: ${note}`);
  const events = await page.locator('#events-list').innerText();
  if (!events.includes('door_opened') || !events.includes('warning')) throw new Error(`events show: ${events}`);
  await page.locator('#detail').screenshot({ path: SCREENSHOT_PATH });
  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join('; ')}`);
  console.log(`[e2e] telemetry panel ok: ${shown}; chart ${chartPoints.length} points; events: ${events.replace(/\s+/g, ' ')}`);
  await browser.close();
  process.exit(0);
} catch (err) {
  console.error(`[e2e] FAILED: ${err && err.stack || err}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
