// tests/e2e/dashboard.bench.mjs — measures the web dashboard with a large simulated
// fleet in headless Chromium: time to the first full render of N retained device
// statuses, the lag from publish to row update (one change at a time, and a storm
// in which every device changes), and frame times while scrolling. Not part of the
// test suite; run by hand:
//
//   node tests/e2e/dashboard.bench.mjs            (DEVICES=10000 QOS=0 by default)
//
// It starts its own Mosquitto (mosquitto/mosquitto.conf on free loopback ports,
// persistence off) and serves examples/dashboard itself, so neither fleet-manager
// nor Postgres is needed: the statuses are published the way the service publishes
// them (retained, under maestra/devices/{id}/status, plus maestra/fleet/summary).
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const dashboardDir = path.join(repo, 'examples/dashboard');
const require = createRequire(path.join(dashboardDir, 'package.json'));
const { chromium } = require('playwright-core');
const mqtt = require('mqtt');

const DEVICES = Number(process.env.DEVICES || 10000);
const QOS = Number(process.env.QOS || 0);          // the dashboard's subscription QoS (?qos=)
const TRICKLE = Number(process.env.TRICKLE || 100); // single changes, one every 100 ms
const SCREENSHOT = process.env.SCREENSHOT_PATH || path.join(repo, 'tests/artifacts/dashboard-10k.png');
const HOST = '127.0.0.1';

const cleanups = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const iso = (ms) => new Date(ms).toISOString();

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

async function startBroker() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'maestra-bench-'));
  const [port, wsPort] = [await freePort(), await freePort()];
  const conf = readFileSync(path.join(repo, 'mosquitto/mosquitto.conf'), 'utf8').split('\n').map((line) => {
    const l = line.trim();
    if (l === 'listener 1883') return `listener ${port} ${HOST}`;
    if (l === 'listener 9001') return `listener ${wsPort} ${HOST}`;
    if (l === 'persistence true') return 'persistence false';
    if (l.startsWith('persistence_location ')) return `persistence_location ${dir}/`;
    if (l === 'log_dest stdout') return `log_dest file ${dir}/mosquitto.log`;
    if (l === 'connection_messages true') return 'connection_messages false';
    return line;
  });
  if (process.getuid && process.getuid() === 0) conf.push('user root');
  writeFileSync(path.join(dir, 'mosquitto.conf'), conf.join('\n'));
  const proc = spawn('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
  cleanups.push(() => { proc.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(wsPort, HOST, () => { s.end(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return { port, wsPort, pid: proc.pid };
    await sleep(50);
  }
  throw new Error('mosquitto did not start');
}

function startStaticServer() {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png' };
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const file = path.join(dashboardDir, url.pathname === '/' ? 'index.html' : path.normalize(url.pathname));
    if (!file.startsWith(dashboardDir) || !existsSync(file)) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, HOST, () => {
    cleanups.push(() => server.close());
    resolve(server.address().port);
  }));
}

function fleetDocs(n) {
  const types = ['esp32', 'raspberry_pi', 'arduino', 'touchdesigner', 'max_msp', 'jetson'];
  const statuses = ['online', 'online', 'online', 'online', 'online', 'online', 'online', 'offline', 'error', 'maintenance'];
  const now = Date.now();
  const docs = [];
  for (let i = 0; i < n; i++) {
    const status = statuses[i % statuses.length];
    docs.push({
      device_id: randomUUID(),
      name: `Device ${String(i).padStart(5, '0')}`,
      device_type: types[i % types.length],
      hardware_id: `hw-${(i * 7919).toString(16).padStart(8, '0')}`,
      status,
      last_seen: iso(now - (i % 600) * 1000),
      changed_at: iso(now - (i % 3600) * 1000),
      reason: status === 'online' ? 'registered' : status === 'offline' ? 'will' : status === 'error' ? 'reported_error' : 'admin',
    });
  }
  return docs;
}

function summaryOf(docs) {
  const s = { online: 0, offline: 0, error: 0, maintenance: 0, total: docs.length, at: iso(Date.now()) };
  for (const d of docs) s[d.status]++;
  return s;
}

function publishAll(client, messages) {
  // QoS 0 in bulk, then one QoS 1 message as a fence: the broker handles a
  // connection's messages in order, so its PUBACK means all of them are stored.
  for (const [topic, payload] of messages) client.publish(topic, payload, { qos: 0, retain: true });
  return new Promise((resolve, reject) => client.publish('bench/fence', 'x', { qos: 1 }, (e) => (e ? reject(e) : resolve())));
}

const pct = (values, p) => {
  const v = [...values].sort((a, b) => a - b);
  return v.length ? v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))] : NaN;
};
const describe = (v) => `n=${v.length} p50=${pct(v, 50)} p95=${pct(v, 95)} max=${Math.max(...v)} ms`;

async function main() {
  const broker = await startBroker();
  const httpPort = await startStaticServer();
  const publisher = mqtt.connect(`mqtt://${HOST}:${broker.port}`, { clientId: 'bench-publisher', protocolVersion: 5 });
  cleanups.push(() => publisher.end(true));
  await new Promise((r, j) => { publisher.once('connect', r); publisher.once('error', j); });

  const docs = fleetDocs(DEVICES);
  const topic = (d) => `maestra/devices/${d.device_id}/status`;
  let t0 = Date.now();
  await publishAll(publisher, [
    ['maestra/fleet/status', JSON.stringify({ status: 'online', since: iso(Date.now()) })],
    ...docs.map((d) => [topic(d), JSON.stringify(d)]),
    ['maestra/fleet/summary', JSON.stringify(summaryOf(docs))],
  ]);
  console.log(`published ${DEVICES} retained statuses in ${Date.now() - t0} ms`);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanups.unshift(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.addInitScript(() => {
    // Sorted by name, so a device whose status flips keeps its row in view and the
    // lag below is measured on the same rows (problems first, the default, would
    // move a flipped device elsewhere in the list).
    localStorage.setItem('maestra-dashboard-sort', JSON.stringify({ key: 'name', dir: 1 }));
    window.__longtasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longtasks.push(Math.round(e.duration));
    }).observe({ type: 'longtask', buffered: true });
  });
  const url = `http://${HOST}:${httpPort}/?broker=ws://${HOST}:${broker.wsPort}&qos=${QOS}`;

  // 1. first full render
  await page.goto(url);
  await page.waitForFunction(() => window.__maestra.firstFullRenderMs !== null, null, { timeout: 60000, polling: 50 });
  const load = await page.evaluate(() => ({ ...window.__maestra, longtasks: window.__longtasks.splice(0),
    domRows: document.querySelectorAll('.viewport .row').length, nodes: document.getElementsByTagName('*').length }));
  console.log(`first full render: ${load.firstFullRenderMs} ms after navigation start ` +
    `(${load.firstFullRenderMs - load.connectedMs} ms after the CONNACK at ${load.connectedMs} ms); ` +
    `rows=${load.rows} domRows=${load.domRows} domNodes=${load.nodes} frames=${load.renders} ` +
    `maxFrameScript=${load.maxRenderMs} ms longtasks=[${load.longtasks.join(', ')}]`);
  await sleep(1500);
  await page.screenshot({ path: SCREENSHOT });

  // Observe the visible rows' status changes in the page (when the DOM changed).
  await page.evaluate(() => {
    window.__changes = [];
    new MutationObserver((records) => {
      const at = Date.now();
      for (const r of records) {
        if (r.attributeName === 'data-status') window.__changes.push([r.target.dataset.deviceId, r.target.dataset.status, at]);
      }
    }).observe(document.getElementById('viewport'), { subtree: true, attributes: true, attributeFilter: ['data-status'] });
  });
  const visible = await page.$$eval('.viewport .row', (rows) => rows.map((r) => r.dataset.deviceId));
  const byId = new Map(docs.map((d) => [d.device_id, d]));
  const flip = (d) => {
    d.status = d.status === 'online' ? 'offline' : 'online';
    d.reason = d.status === 'online' ? 'heartbeat' : 'will';
    d.changed_at = d.last_seen = iso(Date.now());
  };

  // 2. trickle: one change at a time to a visible device
  const sent = [];
  for (let i = 0; i < TRICKLE; i++) {
    const d = byId.get(visible[i % Math.min(visible.length, 20)]);
    flip(d);
    sent.push([d.device_id, d.status, Date.now()]);
    publisher.publish(topic(d), JSON.stringify(d), { qos: 0, retain: true });
    await sleep(100);
  }
  await sleep(500);
  const changes = await page.evaluate(() => window.__changes.splice(0));
  const lags = [];
  for (const [id, status, at] of sent) {
    const seen = changes.find((c) => c[0] === id && c[1] === status && c[2] >= at);
    if (seen) { lags.push(seen[2] - at); changes.splice(changes.indexOf(seen), 1); }
  }
  console.log(`update lag, single changes (publish -> row updated): ${describe(lags)}`);

  // 3. storm: every device changes at once, then a new summary
  await page.evaluate(() => { window.__maestra.maxRenderMs = 0; window.__longtasks.length = 0; });
  const before = await page.evaluate(() => window.__maestra.renders);
  const visibleSet = new Set(visible);
  t0 = Date.now();
  for (const d of docs) { flip(d); publisher.publish(topic(d), JSON.stringify(d), { qos: 0, retain: true }); }
  const summary = summaryOf(docs);
  publisher.publish('maestra/fleet/summary', JSON.stringify(summary), { qos: 1, retain: true });
  const published = Date.now() - t0;
  await page.waitForFunction((online) => document.getElementById('count-online').textContent === online,
    summary.online.toLocaleString('en-US'), { timeout: 60000, polling: 'raf' });
  const countsAt = Date.now() - t0;
  await sleep(300);
  const storm = await page.evaluate(() => ({ ...window.__maestra, longtasks: window.__longtasks.splice(0), changes: window.__changes.splice(0) }));
  const lastVisible = Math.max(...storm.changes.filter((c) => visibleSet.has(c[0])).map((c) => c[2])) - t0;
  console.log(`storm: ${DEVICES} changes published in ${published} ms; visible rows all updated ${lastVisible} ms ` +
    `and counts ${countsAt} ms after the first publish; frames=${storm.renders - before} ` +
    `maxFrameScript=${storm.maxRenderMs} ms longtasks=[${storm.longtasks.join(', ')}]`);

  // 4. scrolling through the whole table
  const scroll = await page.evaluate(async () => {
    const viewport = document.getElementById('viewport');
    const gaps = [];
    let last = performance.now();
    const end = last + 3000;
    await new Promise((resolve) => {
      const step = (now) => {
        gaps.push(now - last);
        last = now;
        viewport.scrollTop += 900;
        if (viewport.scrollTop + viewport.clientHeight >= viewport.scrollHeight) viewport.scrollTop = 0;
        if (now < end) requestAnimationFrame(step); else resolve();
      };
      requestAnimationFrame(step);
    });
    return { gaps: gaps.slice(1).map((g) => Math.round(g * 10) / 10), maxRenderMs: window.__maestra.maxRenderMs };
  });
  console.log(`scrolling 900 px per frame for 3 s: frame interval ${describe(scroll.gaps)}`);
  console.log(`screenshot: ${SCREENSHOT}`);
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  for (const cleanup of cleanups) {
    try { await cleanup(); } catch { /* best effort */ }
  }
}
