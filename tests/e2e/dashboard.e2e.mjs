// tests/e2e/dashboard.e2e.mjs — end-to-end test of the web dashboard in headless
// Chromium (Debian's /usr/bin/chromium driven by playwright-core; never a downloaded
// browser) against a real stack: fleet-manager, Mosquitto, Postgres. It does not start
// the stack: tests/integration/test_dashboard_e2e.py does, and passes it in:
//
//   DASHBOARD_URL    http://127.0.0.1:<http port>/?broker=ws://127.0.0.1:<ws port>
//   API_URL          http://127.0.0.1:<http port>
//   MQTT_URL         mqtt://127.0.0.1:<tcp port>   (the simulated device connects here)
//   SERVICE_PID      optional, fleet-manager's pid: when given, it is killed (SIGKILL) to
//                    check the "service down" banner, raised by the service's MQTT will
//   BROKER_PID       the broker's pid: the last step stops it with SIGTERM
//   SCREENSHOT_PATH  where to save the screenshot of the populated dashboard
//   TOPIC_PREFIX     optional, default maestra;  CHROMIUM_PATH optional, default /usr/bin/chromium
//
// Exits 0 when every step passed, 1 with the failing step, the page's console and a
// failure screenshot otherwise. Modules come from examples/dashboard/node_modules
// (`npm ci` there installs mqtt and playwright-core).
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dashboardDir = path.resolve(here, '../../examples/dashboard');
const require = createRequire(path.join(dashboardDir, 'package.json'));
const { chromium } = require('playwright-core');
const mqtt = require('mqtt');

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

const DASHBOARD_URL = env('DASHBOARD_URL');
const API_URL = env('API_URL').replace(/\/+$/, '');
const MQTT_URL = env('MQTT_URL');
const BROKER_PID = Number(env('BROKER_PID'));
const SERVICE_PID = Number(process.env.SERVICE_PID || 0);
const SCREENSHOT_PATH = path.resolve(env('SCREENSHOT_PATH', 'tests/artifacts/dashboard.png'));
const PREFIX = env('TOPIC_PREFIX', 'maestra');
const CHROMIUM_PATH = env('CHROMIUM_PATH', '/usr/bin/chromium');
const OFFLINE_WITHIN_MS = 2000;
const TOTAL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 120000);

const browserLog = [];
const pageErrors = [];
const foreignRequests = [];
let browser;
let page;
const devices = [];  // MQTT.js device clients to end at exit

function log(text) {
  console.log(`[e2e] ${text}`);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    log(`ok   ${name} (${Date.now() - t0} ms)${detail ? ` — ${detail}` : ''}`);
  } catch (err) {
    err.message = `step "${name}" failed after ${Date.now() - t0} ms: ${err.message}`;
    throw err;
  }
}

// --- HTTP API ---------------------------------------------------------------------------
async function api(method, route, body, expected) {
  const res = await fetch(API_URL + route, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (expected && res.status !== expected) {
    throw new Error(`${method} ${route} answered ${res.status}, expected ${expected}: ${text.slice(0, 300)}`);
  }
  return text ? JSON.parse(text) : null;
}

async function register(name, deviceType, hardwareId, extra = {}) {
  const record = await api('POST', '/devices/register',
    { name, device_type: deviceType, hardware_id: hardwareId, firmware_version: '1.4.2', ...extra });
  if (!record || !record.id) throw new Error(`registration of ${hardwareId} returned no id: ${JSON.stringify(record)}`);
  return record;
}

// --- a simulated MQTT device ---------------------------------------------------------------
function connectDevice(id) {
  const presence = `${PREFIX}/devices/${id}/presence`;
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(MQTT_URL, {
      clientId: `e2e-device-${id.slice(0, 8)}`,
      protocolVersion: 5,
      clean: true,
      keepalive: 30,
      reconnectPeriod: 0,   // once killed, stay dead
      connectTimeout: 5000,
      will: { topic: presence, payload: JSON.stringify({ state: 'offline', session: 1 }), qos: 1, retain: true },
    });
    devices.push(client);
    client.once('error', reject);
    client.once('connect', () => {
      client.publish(presence, JSON.stringify({ state: 'online', session: 1 }), { qos: 1, retain: true }, (err) => {
        if (err) reject(err); else resolve(client);
      });
    });
  });
}

// --- page helpers ------------------------------------------------------------------------
const rowSelector = (id) => `.viewport .row[data-device-id="${id}"]`;

async function waitForRowStatus(id, status, timeout = 10000) {
  await page.waitForFunction(({ selector, status }) => {
    const row = document.querySelector(selector);
    return row !== null && row.dataset.status === status && row.querySelector('.pill').textContent === status;
  }, { selector: rowSelector(id), status }, { timeout, polling: 'raf' });
}

async function waitForRowGone(id, timeout = 10000) {
  await page.waitForFunction((selector) => document.querySelector(selector) === null,
    rowSelector(id), { timeout, polling: 'raf' });
}

async function rowText(id) {
  return page.$eval(rowSelector(id), (row) => [...row.children].map((c) => c.textContent.trim()).join(' | '));
}

// The rows as the eye reads them, top to bottom (the table is virtual: DOM order is not
// screen order): [{id, name, status, since, sinceMs}].
async function visibleRows() {
  return page.$$eval('.viewport .row', (rows) => rows
    .map((row) => ({
      top: row.getBoundingClientRect().top,
      id: row.dataset.deviceId,
      name: row.querySelector('.c-name').textContent,
      status: row.dataset.status,
      since: row.querySelector('.c-since').textContent,
      sinceMs: row.querySelector('.c-since').dataset.ms || null,
    }))
    .sort((a, b) => a.top - b.top)
    .map(({ top, ...rest }) => rest));
}

async function waitForOrder(describe, predicate, timeout = 3000) {
  const deadline = Date.now() + timeout;
  let rows = [];
  for (;;) {
    rows = await visibleRows();
    if (predicate(rows)) return rows;
    if (Date.now() > deadline) {
      throw new Error(`${describe}; rows are ${JSON.stringify(rows.map((r) => `${r.name}:${r.status}`))}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
const PROBLEMS_FIRST = ['error', 'offline', 'maintenance', 'online', 'online', 'online'];

async function main() {
  mkdirSync(path.dirname(SCREENSHOT_PATH), { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 860 } });
  page.on('console', (msg) => browserLog.push(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => pageErrors.push(String(err && err.stack || err)));
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (['data:', 'blob:'].includes(url.protocol)) return;   // MQTT.js runs its timers in a blob worker
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
      foreignRequests.push(req.url());
    }
  });

  await step('without MQTT.js the page says so and never blames the broker', async () => {
    const probe = await browser.newPage();
    try {
      await probe.route('**/node_modules/mqtt/dist/mqtt.min.js', (route) => route.fulfill({ status: 404, body: 'gone' }));
      await probe.goto(DASHBOARD_URL, { waitUntil: 'load' });
      const state = () => probe.evaluate(() => ({
        broker: document.body.dataset.broker,
        kind: document.getElementById('banner').dataset.kind,
        hidden: document.getElementById('banner').hidden,
        text: document.getElementById('banner').textContent,
        pill: document.getElementById('broker-state').textContent,
      }));
      await probe.waitForFunction(() => document.getElementById('banner').dataset.kind === 'client', null, { timeout: 5000 })
        .catch(async () => { throw new Error(`no MQTT.js hint within 5 s: ${JSON.stringify(await state())}`); });
      await probe.waitForTimeout(2500);   // the once-a-second refresh used to replace the hint with "broker down"
      const s = await state();
      if (s.hidden || s.kind !== 'client' || !/MQTT\.js/.test(s.text) || !/npm ci/.test(s.text)) {
        throw new Error(`the hint is not shown: ${JSON.stringify(s)}`);
      }
      if (/broker connection down|cannot reach/i.test(s.text) || s.broker === 'disconnected' || /disconnected/.test(s.pill)) {
        throw new Error(`the page blames the broker: ${JSON.stringify(s)}`);
      }
      return `banner: ${s.text.trim()} / ${s.pill}`;
    } finally {
      await probe.close();
    }
  });

  await step('dashboard loads and connects to the broker', async () => {
    const response = await page.goto(DASHBOARD_URL, { waitUntil: 'load' });
    if (!response || response.status() !== 200) throw new Error(`GET / answered ${response && response.status()}`);
    const title = await page.textContent('h1');
    if (title.trim() !== 'Maestra Fleet') throw new Error(`title is ${JSON.stringify(title)}`);
    await page.waitForFunction(() => document.body.dataset.broker === 'connected', null, { timeout: 10000 });
    await page.waitForFunction(() => document.body.dataset.service === 'online', null, { timeout: 10000 });
    const hook = await page.evaluate(() => window.__maestra);
    for (const key of ['rows', 'renders', 'lastRenderMs', 'firstFullRenderMs']) {
      if (!(key in hook)) throw new Error(`window.__maestra lacks ${key}`);
    }
    return `broker connected, service online, hook ${JSON.stringify(hook)}`;
  });

  const stage = await register('Stage Left ESP32', 'esp32', 'e2e-esp32-stage-left',
    { location: { room: 'Stage left', building: 'Main', floor: 1 }, metadata: { serial_number: 'SL-0042' } });
  await step('a registered device appears online', async () => {
    await waitForRowStatus(stage.id, 'online');
    return await rowText(stage.id);
  });

  await step('a killed device turns offline within 2 s without a reload', async () => {
    const device = await connectDevice(stage.id);
    // The birth went through the broker; give the service a moment to take it in, so
    // the will below is judged against this connection.
    await new Promise((r) => setTimeout(r, 300));
    await waitForRowStatus(stage.id, 'online', 2000);
    const navigations = await page.evaluate(() => performance.getEntriesByType('navigation').length);
    const t0 = Date.now();
    device.stream.destroy();                       // power cut: no DISCONNECT, the broker sends the will
    await waitForRowStatus(stage.id, 'offline', OFFLINE_WITHIN_MS);
    const took = Date.now() - t0;
    const reason = await page.$eval(`${rowSelector(stage.id)} .c-reason`, (c) => c.textContent);
    if (reason !== 'will') throw new Error(`reason shown is ${JSON.stringify(reason)}, expected "will"`);
    const after = await page.evaluate(() => performance.getEntriesByType('navigation').length);
    if (after !== navigations) throw new Error('the page was reloaded');
    return `offline after ${took} ms, reason ${reason}`;
  });

  await step('PATCH maintenance shows maintenance', async () => {
    await api('PATCH', `/devices/${stage.id}`, { status: 'maintenance' }, 200);
    await waitForRowStatus(stage.id, 'maintenance');
    return await rowText(stage.id);
  });

  const more = [];
  await step('more devices appear (online, error, offline)', async () => {
    for (const [name, type, hw, extra] of [
      ['Lobby Projector Pi', 'raspberry_pi', 'e2e-rpi-lobby', { metadata: { location: 'Lobby, north wall', model: 'Pi 4' } }],
      ['Main Stage TouchDesigner', 'touchdesigner', 'e2e-td-main'],
      ['Sound Desk Max', 'max_msp', 'e2e-max-sound'],
      ['Foyer Lights Arduino', 'arduino', 'e2e-uno-foyer'],
      ['Backstage Sensor ESP32', 'esp32', 'e2e-esp32-backstage'],
    ]) more.push(await register(name, type, hw, extra));
    await api('POST', '/devices/heartbeat', { device_id: more[2].id, status: 'error' }, 200);
    const foyer = await connectDevice(more[3].id);
    await new Promise((r) => setTimeout(r, 300));
    foyer.stream.destroy();
    for (const d of more) await waitForRowStatus(d.id, d === more[2] ? 'error' : d === more[3] ? 'offline' : 'online');
    await page.waitForFunction(() => document.getElementById('count-total').textContent === '6' &&
      document.getElementById('count-online').textContent === '3' &&
      document.getElementById('count-offline').textContent === '1' &&
      document.getElementById('count-error').textContent === '1' &&
      document.getElementById('count-maintenance').textContent === '1', null, { timeout: 5000 });
    return '6 devices: 3 online, 1 offline, 1 error, 1 maintenance';
  });

  await step('problems come first: error, offline, maintenance, then online', async () => {
    const rows = await waitForOrder('not problems first',
      (r) => JSON.stringify(r.map((x) => x.status)) === JSON.stringify(PROBLEMS_FIRST));
    const dir = await page.$eval('[data-sort="status"]', (h) => h.dataset.dir);
    if (dir !== 'asc') throw new Error(`the Status header does not show the order (data-dir ${dir})`);
    return rows.map((r) => `${r.name} (${r.status})`).join(', ');
  });

  await step('an offline device shows since when, from its changed_at', async () => {
    const foyer = more[3];
    const record = await api('GET', `/devices/${foyer.id}`, null, 200);
    const changedMs = Date.parse(record.status_changed_at);
    const rows = await visibleRows();
    const row = rows.find((r) => r.id === foyer.id);
    if (!row) throw new Error('the offline row is not shown');
    if (Number(row.sinceMs) !== changedMs) {
      throw new Error(`offline since ${row.sinceMs}, expected status_changed_at ${record.status_changed_at} (${changedMs})`);
    }
    const hhmm = new Date(changedMs).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (!row.since.includes(hhmm) || !/\(\d+ (s|min)\)/.test(row.since)) {
      throw new Error(`the cell reads ${JSON.stringify(row.since)}, expected ${hhmm} and a duration`);
    }
    const others = rows.filter((r) => r.status !== 'offline' && r.since !== '');
    if (others.length) throw new Error(`devices that are not offline show a time: ${JSON.stringify(others)}`);
    return `"${row.since}" for ${record.status_changed_at}`;
  });

  await step('another order is kept across a reload, and problems first comes back', async () => {
    await page.click('[data-sort="name"]');
    const byName = (r) => r.map((x) => x.name).join('|') === [...r.map((x) => x.name)].sort((a, b) =>
      a.toLowerCase() < b.toLowerCase() ? -1 : 1).join('|');
    await waitForOrder('not sorted by name after a click', byName);
    await page.reload({ waitUntil: 'load' });
    await page.waitForFunction(() => document.querySelectorAll('.viewport .row').length === 6, null, { timeout: 10000 });
    await waitForOrder('the name order was forgotten after a reload', byName);
    const dir = await page.$eval('[data-sort="name"]', (h) => h.dataset.dir);
    if (dir !== 'asc') throw new Error(`the Name header does not show the kept order (data-dir ${dir})`);
    await page.click('[data-sort="status"]');
    await waitForOrder('not problems first again',
      (r) => JSON.stringify(r.map((x) => x.status)) === JSON.stringify(PROBLEMS_FIRST));
    return 'name order kept across a reload; status order restored';
  });

  await step('filters and search narrow the table', async () => {
    await page.selectOption('#filter-type', 'esp32');
    await page.waitForFunction(() => document.querySelectorAll('.viewport .row').length === 2, null, { timeout: 3000 });
    await page.selectOption('#filter-type', '');
    await page.selectOption('#filter-status', 'online');
    await page.waitForFunction(() => document.querySelectorAll('.viewport .row').length === 3, null, { timeout: 3000 });
    await page.selectOption('#filter-status', '');
    await page.fill('#search', 'sound');
    await page.waitForFunction(() => document.querySelectorAll('.viewport .row').length === 1, null, { timeout: 3000 });
    await page.fill('#search', '');
    await page.waitForFunction(() => document.querySelectorAll('.viewport .row').length === 6, null, { timeout: 3000 });
  });

  await step('the location reads as text, also from metadata.location', async () => {
    const readLocation = async (id, expected) => {
      await page.click(rowSelector(id));
      await page.waitForFunction((want) => {
        const dd = document.getElementById('detail-location');
        return dd !== null && document.getElementById('detail').dataset.deviceId === want;
      }, id, { timeout: 5000 });
      const text = await page.textContent('#detail-location');
      if (text !== expected) throw new Error(`location reads ${JSON.stringify(text)}, expected ${JSON.stringify(expected)}`);
      return text;
    };
    const lobby = await readLocation(more[0].id, 'Lobby, north wall');
    const metadata = await page.$eval('#detail-fields', (dl) => dl.textContent);
    if (/[{}"]/.test(metadata)) throw new Error(`raw JSON in the detail panel: ${metadata}`);
    const stageText = await readLocation(stage.id, 'Building Main · Floor 1 · Room Stage left');
    return `${lobby} / ${stageText}`;
  });

  await step('the detail panel shows the status history', async () => {
    await page.click(rowSelector(stage.id));
    await page.waitForSelector('#detail:not([hidden])', { timeout: 3000 });
    await page.waitForFunction(() => document.querySelectorAll('#history-body tr').length >= 3, null, { timeout: 5000 });
    const history = await page.$$eval('#history-body tr', (rows) => rows.map((r) => r.textContent.replace(/\s+/g, ' ').trim()));
    const text = history.join('\n');
    for (const expected of ['maintenance', 'will', 'admin']) {
      if (!text.includes(expected)) throw new Error(`history lacks ${expected}: ${text}`);
    }
    return `${history.length} entries`;
  });

  await step('a command sent from the detail panel shows its states live, up to succeeded', async () => {
    const td = more[1];  // Main Stage TouchDesigner, online
    const client = await connectDevice(td.id);
    const received = [];
    client.on('message', (topic, payload) => {
      const c = JSON.parse(payload.toString());
      received.push(c);
      const reply = `${PREFIX}/devices/${td.id}/replies/${c.id}`;
      client.publish(reply, JSON.stringify({ state: 'delivered' }), { qos: 1 });
      // Long enough for the page to show `delivered` before the final state.
      setTimeout(() => client.publish(reply, JSON.stringify({ state: 'succeeded', result: { ok: true } }), { qos: 1 }), 700);
    });
    await new Promise((resolve, reject) => client.subscribe(`${PREFIX}/devices/${td.id}/commands/+`, { qos: 1 },
      (err) => (err ? reject(err) : resolve())));
    await page.click(rowSelector(td.id));
    await page.waitForFunction((want) => document.getElementById('detail').dataset.deviceId === want, td.id, { timeout: 5000 });
    await page.fill('#command-name', 'restart_show');
    await page.fill('#command-params', '{"scene": 3}');
    await page.click('#command-send');
    const shows = (state) => page.waitForFunction((want) => [...document.querySelectorAll('#commands-body tr')].some(
      (r) => r.textContent.includes('restart_show') && r.querySelector('.pill').textContent === want), state, { timeout: 8000 });
    await shows('delivered');   // moved by the service's message on <prefix>/commands/..., not by a reload
    await shows('succeeded');
    if (received.length < 1 || received[0].name !== 'restart_show' || !received[0].params || received[0].params.scene !== 3) {
      throw new Error(`the device received ${JSON.stringify(received)}`);
    }
    const stored = await api('GET', `/commands/${received[0].id}`, null, 200);
    if (stored.state !== 'succeeded') throw new Error(`stored state ${stored.state}`);
    await page.fill('#command-params', 'not json');
    await page.fill('#command-name', 'blink');
    await page.click('#command-send');
    await page.waitForFunction(() => /params must be JSON/.test(document.getElementById('command-note').textContent), null,
      { timeout: 3000 });
    await page.fill('#command-params', '');
    return `history ${stored.history.map((h) => h.to).join(' > ')}`;
  });

  await step('a command sent to the shown devices (type filter) reaches each of them', async () => {
    await page.selectOption('#filter-type', 'esp32');
    await page.waitForFunction(() => document.getElementById('fanout-send').textContent.includes('type esp32'), null,
      { timeout: 3000 });
    await page.fill('#fanout-name', 'recalibrate');
    await page.click('#fanout-send');
    await page.waitForFunction(() => /^2 commands stored/.test(document.getElementById('fanout-note').textContent), null,
      { timeout: 5000 });
    for (const id of [stage.id, more[4].id]) {
      const list = await api('GET', `/devices/${id}/commands`, null, 200);
      if (!list.some((c) => c.name === 'recalibrate')) throw new Error(`${id} got no recalibrate: ${JSON.stringify(list)}`);
    }
    await page.selectOption('#filter-type', '');
    return 'both esp32 devices';
  });

  await step('screenshot of the populated dashboard', async () => {
    await page.waitForTimeout(1100);   // let "x s ago" tick once, for a natural picture
    await page.screenshot({ path: SCREENSHOT_PATH });
    return SCREENSHOT_PATH;
  });

  await step('a deleted device disappears', async () => {
    const lobby = more[0];
    await api('DELETE', `/devices/${lobby.id}`, null, 204);
    await waitForRowGone(lobby.id);
    await page.waitForFunction(() => document.getElementById('count-total').textContent === '5', null, { timeout: 5000 });
    return 'row removed, total 5';
  });

  if (pageErrors.length) throw new Error(`errors in the page:\n${pageErrors.join('\n')}`);
  if (foreignRequests.length) throw new Error(`requests left loopback: ${foreignRequests.join(', ')}`);

  if (SERVICE_PID) {
    await step('the service killed shows the service banner', async () => {
      process.kill(SERVICE_PID, 'SIGKILL');        // a crash: the broker publishes the service's will
      await page.waitForFunction(() => {
        const banner = document.getElementById('banner');
        return document.body.dataset.service === 'offline' && !banner.hidden &&
          banner.dataset.kind === 'service' && /fleet-manager/.test(banner.textContent);
      }, null, { timeout: 10000 });
      return `banner: ${(await page.textContent('#banner')).trim()}`;
    });
  }

  await step('the broker stopped shows the banner', async () => {
    process.kill(BROKER_PID, 'SIGTERM');
    await page.waitForFunction(() => {
      const banner = document.getElementById('banner');
      return document.body.dataset.broker === 'disconnected' && !banner.hidden && banner.dataset.kind === 'broker' &&
        banner.getBoundingClientRect().height > 0 && /broker/i.test(banner.textContent);
    }, null, { timeout: 10000 });
    const text = await page.textContent('#banner');
    const rows = await page.$$eval('.viewport .row', (r) => r.length);
    if (rows !== 5) throw new Error(`the rows should stay while the broker is down, found ${rows}`);
    const down = SCREENSHOT_PATH.replace(/(\.png)?$/, '-broker-down.png');
    await page.screenshot({ path: down });
    return `banner: ${text.trim()}`;
  });
}

const watchdog = setTimeout(() => {
  console.error(`[e2e] FAIL: the test did not finish within ${TOTAL_TIMEOUT_MS} ms`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

let status = 0;
try {
  await main();
  log('all steps passed');
} catch (err) {
  status = 1;
  console.error(`[e2e] FAIL: ${err && err.stack || err}`);
  if (page) {
    const failure = SCREENSHOT_PATH.replace(/(\.png)?$/, '-failure.png');
    try {
      await page.screenshot({ path: failure });
      console.error(`[e2e] failure screenshot: ${failure}`);
      console.error(`[e2e] window.__maestra: ${JSON.stringify(await page.evaluate(() => window.__maestra))}`);
    } catch { /* the page may be gone */ }
  }
  if (pageErrors.length) console.error(`[e2e] page errors:\n${pageErrors.join('\n')}`);
  console.error(`[e2e] browser console (last 40):\n${browserLog.slice(-40).join('\n')}`);
} finally {
  for (const client of devices) client.end(true);
  if (browser) await browser.close().catch(() => {});
  clearTimeout(watchdog);
}
process.exit(status);
