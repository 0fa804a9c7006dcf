/*
 * examples/dashboard/app.js — the live fleet view. It owns the MQTT-over-WebSockets
 * connection, the in-memory model built from retained status messages and the
 * batched rendering. It never polls the HTTP API for status: the API is asked only
 * for one device's record, history and telemetry (latest metrics, one metric's
 * last hour, recent events), when its detail panel is opened.
 *
 * A note on rendering. Messages are only buffered on arrival (keyed by topic, so a
 * burst of updates to one device costs one apply) and applied in one batch per
 * animation frame. The table is virtual: only the rows in view plus a margin exist
 * in the DOM, keyed by device id and reused from frame to frame, and a cell is
 * written only when its text changes, so 10,000 devices cost what ~50 do. One
 * timer per second rewrites the "12 s ago" cells of those rows.
 *
 * A note on order. Problems come first by default: error, then offline, then
 * maintenance, then online (the Status column, ascending). A click on a column header
 * sorts by it instead; the choice is remembered in localStorage.
 *
 * Commands (send one, see its state live, send to the filtered set) are in
 * commands.js, through the hooks of `window.__maestraPage`.
 *
 * A note on deletions and reconnects. An empty retained payload on a device's
 * status topic means the device was deleted. After a reconnect the broker resends
 * every retained status; rows that were not resent once that burst has gone quiet
 * belong to devices deleted while we were away, and are dropped (see sweepStale).
 */
(() => {
  'use strict';

  // --- configuration (query parameters) -----------------------------------------------
  const params = new URLSearchParams(location.search);
  const PREFIX = (params.get('prefix') || 'maestra').replace(/\/+$/, '');
  const BROKER_URL = params.get('broker') ||
    `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname || 'localhost'}:9001`;
  const QOS = params.get('qos') === '1' ? 1 : 0; // retained state: resent in full on every reconnect anyway
  const API_BASE = (params.get('api') || (location.protocol.startsWith('http') ? location.origin : 'http://localhost:8080'))
    .replace(/\/+$/, '');

  const TOPIC_DEVICES = `${PREFIX}/devices/+/status`;
  const TOPIC_SUMMARY = `${PREFIX}/fleet/summary`;
  const TOPIC_FLEET = `${PREFIX}/fleet/status`;
  const DEVICE_HEAD = `${PREFIX}/devices/`;
  const DEVICE_TAIL = '/status';
  const TOPIC_COMMANDS = `${PREFIX}/commands/#`;  // state changes of commands (commands.js)
  const COMMANDS_HEAD = `${PREFIX}/commands/`;

  const ROW_HEIGHT = 36;        // px, the same as --row-height in style.css
  const OVERSCAN = 10;          // rows rendered above and below the visible ones
  const SWEEP_QUIET_MS = 1500;  // retained burst after a reconnect is over after this much silence
  const HISTORY_LIMIT = 20;
  const STATUSES = ['online', 'offline', 'error', 'maintenance'];
  const STATUS_ORDER = { error: 0, offline: 1, maintenance: 2, online: 3 };
  const SORT_KEYS = ['name', 'type', 'hardware', 'status', 'since', 'seen', 'reason'];
  const SORT_STORAGE = 'maestra-dashboard-sort';

  // --- measurement hook (read by tests and benchmarks) ------------------------------------
  const stats = {
    rows: 0,               // devices known (rows of the model, filtered or not)
    shown: 0,              // rows passing the filters
    renders: 0,            // batched frames applied
    lastRenderMs: 0,       // script time of the last frame
    maxRenderMs: 0,
    firstFullRenderMs: null, // ms after navigation start when rows first reached the summary's total
    connectedMs: null,     // ms after navigation start of the first CONNACK
    messages: 0,           // MQTT messages received
    broker: 'connecting',  // connecting | connected | disconnected | no-client (MQTT.js did not load)
    service: 'unknown',
  };
  window.__maestra = stats;

  // --- model ------------------------------------------------------------------------------
  /** id -> entry {id, doc, status, name, type, hardware, reason, seenMs, changedMs, haystack, gen} */
  const devices = new Map();
  let summary = null;        // last maestra/fleet/summary document
  let fleet = null;          // last maestra/fleet/status document
  let fleetAt = null;        // when it arrived (the service's will carries no "since")
  let generation = 0;        // bumped per connection; entries carry the one they were last seen in
  let sweepAfterBurst = false;
  let lastRetainedAt = 0;
  let lastBrokerError = ''; // the last error MQTT.js reported, shown in the banner

  /** topic -> payload text: the messages received since the last frame, latest wins */
  const inbox = new Map();

  // --- view state -------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const el = {
    banner: $('banner'), brokerState: $('broker-state'), serviceState: $('service-state'),
    viewport: $('viewport'), spacer: $('spacer'), empty: $('empty'), shown: $('shown'),
    search: $('search'), filterStatus: $('filter-status'), filterType: $('filter-type'),
    detail: $('detail'), detailName: $('detail-name'), detailStatus: $('detail-status'),
    detailGone: $('detail-gone'), detailFields: $('detail-fields'), historyBody: $('history-body'),
    historyNote: $('history-note'), tokenForm: $('token-form'), tokenInput: $('token-input'),
    counts: Object.fromEntries(['total', ...STATUSES].map((s) => [s, $(`count-${s}`)])),
  };

  const view = {
    search: [], status: '', type: '',
    ...loadSort(),            // problems first unless the operator chose another order
    list: [],                 // entries passing the filters, sorted
    listDirty: true,          // filters, sort or membership changed: recompute list
    viewportHeight: el.viewport.clientHeight || 600,
    types: '',                // the device types in the select, joined (to notice changes)
    selectedId: null,
  };
  // What commands.js (loaded after this file) needs of the page, and its hooks.
  const page = window.__maestraPage = {
    apiBase: API_BASE,
    authHeaders: () => authHeaders(),
    selectedId: () => view.selectedId,
    shownIds: () => view.list.map((e) => e.id),
    filter: () => ({ status: view.status, type: view.type, search: view.search }),
    askToken: () => { el.tokenForm.hidden = false; },
    onCommandMessage: null,   // (topic, payload text)
    onDetailOpened: null,     // (device id)
    onListChanged: null,      // ()
  };
  let rowsById = new Map();   // rendered rows, device id -> element
  const rowPool = [];         // detached rows for reuse
  let frameRequested = false;

  function requestFrame() {
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(frame);
    }
  }

  // --- small helpers ----------------------------------------------------------------------
  function loadSort() {
    try {
      const saved = JSON.parse(localStorage.getItem(SORT_STORAGE) || 'null');
      if (saved && SORT_KEYS.includes(saved.key) && (saved.dir === 1 || saved.dir === -1)) {
        return { sortKey: saved.key, sortDir: saved.dir };
      }
    } catch { /* storage disabled or garbage: use the default */ }
    return { sortKey: 'status', sortDir: 1 };
  }
  function saveSort() {
    try {
      localStorage.setItem(SORT_STORAGE, JSON.stringify({ key: view.sortKey, dir: view.sortDir }));
    } catch { /* storage disabled: the choice lasts for this page only */ }
  }
  function parseJson(text) {
    try { return JSON.parse(text); } catch { return null; }
  }
  function parseTime(text) {
    const ms = typeof text === 'string' ? Date.parse(text) : NaN;
    return Number.isFinite(ms) ? ms : null;
  }
  function str(value) {
    return value === null || value === undefined ? '' : String(value);
  }
  function ago(ms, now = Date.now()) {
    if (ms === null) return '—';
    const s = Math.floor((now - ms) / 1000);
    if (s < 1) return 'just now';
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  function absolute(ms) {
    return ms === null ? '' : new Date(ms).toLocaleString();
  }
  // "14:03" today, "26 Nov, 14:03" on another day: when a device went offline.
  function clock(ms, now = Date.now()) {
    const d = new Date(ms);
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return d.toDateString() === new Date(now).toDateString()
      ? time : `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })}, ${time}`;
  }
  // "12 min" for how long something has lasted.
  function duration(ms, now = Date.now()) {
    const s = Math.max(0, Math.floor((now - ms) / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  // The "Offline since" cell: the status document's changed_at while offline.
  function sinceText(e, now = Date.now()) {
    return e.offlineMs === null ? '' : `${clock(e.offlineMs, now)} (${duration(e.offlineMs, now)})`;
  }

  // A location object as text an operator reads: "Building Main · Floor 1 · Room Lab":
  // places from the largest to the smallest, then coordinates, then the rest as
  // "Key: value". Metadata (places = false) is "Key: value" for every field, in order.
  const PLACE_KEYS = ['site', 'campus', 'venue', 'address', 'city', 'building', 'hall', 'floor', 'level',
    'room', 'area', 'zone', 'stage', 'rack', 'position', 'spot', 'description', 'notes'];
  function label(key) {
    const words = String(key).replace(/[_-]+/g, ' ').trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }
  function plain(value) {
    if (value === null || value === undefined || value === '') return '';
    if (Array.isArray(value)) return value.map(plain).filter(Boolean).join(', ');
    if (typeof value === 'object') return readable(value, ', ');
    return String(value);
  }
  function readable(value, separator = ' · ', places = true) {
    if (value === null || value === undefined) return '';
    if (typeof value !== 'object' || Array.isArray(value)) return plain(value);
    const keys = Object.keys(value);
    const lower = (k) => k.toLowerCase();
    const parts = [];
    const used = new Set();
    const lat = keys.find((k) => ['lat', 'latitude'].includes(lower(k)));
    const lon = keys.find((k) => ['lon', 'lng', 'long', 'longitude'].includes(lower(k)));
    for (const place of places ? PLACE_KEYS : []) {
      const key = keys.find((k) => lower(k) === place);
      if (key === undefined || used.has(key)) continue;
      used.add(key);
      const text = plain(value[key]);
      if (text) parts.push(['description', 'notes'].includes(place) ? text : `${label(key)} ${text}`);
    }
    if (places && lat !== undefined && lon !== undefined && Number.isFinite(Number(value[lat])) &&
        Number.isFinite(Number(value[lon]))) {
      used.add(lat).add(lon);
      parts.push(`${Number(value[lat]).toFixed(5)}, ${Number(value[lon]).toFixed(5)}`);
    }
    for (const key of keys) {
      if (used.has(key)) continue;
      const text = plain(value[key]);
      if (text) parts.push(`${label(key)}: ${text}`);
    }
    return parts.join(separator);
  }
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function makeEntry(id, doc) {
    const name = str(doc.name) || id;
    const type = str(doc.device_type);
    const hardware = str(doc.hardware_id);
    const status = str(doc.status) || 'unknown';
    const changedMs = parseTime(doc.changed_at);
    return {
      id, doc, name, type, hardware, status,
      nameKey: name.toLowerCase(),
      reason: str(doc.reason),
      seenMs: parseTime(doc.last_seen),
      changedMs,
      offlineMs: status === 'offline' ? changedMs : null,
      haystack: `${name}\n${id}\n${hardware}\n${type}`.toLowerCase(),
      gen: generation,
    };
  }

  // Fields that place an entry in the filtered, sorted list.
  function listKey(e) {
    return `${e.status}\u0000${e.type}\u0000${e.haystack}\u0000${sortValue(e)}`;
  }

  // --- applying messages (once per frame) -------------------------------------------------
  function applyInbox() {
    let countsChanged = false;
    for (const [topic, text] of inbox) {
      if (topic === TOPIC_SUMMARY) {
        summary = text ? parseJson(text) : null;
        countsChanged = true;
      } else if (topic === TOPIC_FLEET) {
        fleet = text ? parseJson(text) : null;
        fleetAt = Date.now();
        renderConnection();
      } else if (topic.startsWith(DEVICE_HEAD) && topic.endsWith(DEVICE_TAIL)) {
        const id = topic.slice(DEVICE_HEAD.length, topic.length - DEVICE_TAIL.length);
        if (!id || id.includes('/')) continue;
        const before = devices.get(id);
        if (!text) {                                  // deleted: the retained topic was cleared
          if (before) { devices.delete(id); view.listDirty = true; countsChanged = true; }
          if (id === view.selectedId) renderDetail();
          continue;
        }
        const doc = parseJson(text);
        if (!doc || typeof doc !== 'object' || Array.isArray(doc)) continue;
        const entry = makeEntry(id, doc);
        devices.set(id, entry);
        if (!before || listKey(before) !== listKey(entry)) view.listDirty = true;
        if (!before || before.status !== entry.status) countsChanged = true;
        if (id === view.selectedId) onSelectedChanged(before, entry);
      }
    }
    inbox.clear();
    return countsChanged;
  }

  function sweepStale() {
    let removed = 0;
    for (const [id, e] of devices) {
      if (e.gen < generation) { devices.delete(id); removed++; }
    }
    if (removed) view.listDirty = true;
    return removed > 0;
  }

  // --- filtering and sorting --------------------------------------------------------------
  function sortValue(e) {
    switch (view.sortKey) {
      case 'type': return e.type.toLowerCase();
      case 'hardware': return e.hardware.toLowerCase();
      case 'status': return STATUS_ORDER[e.status] ?? 9;
      case 'since': return e.offlineMs ?? Number.MAX_SAFE_INTEGER; // longest offline first
      case 'seen': return e.seenMs ?? 0;
      case 'reason': return e.reason;
      default: return e.nameKey;
    }
  }

  function compare(a, b) {
    const dir = view.sortDir;
    const va = sortValue(a), vb = sortValue(b);
    if (va < vb) return -dir;
    if (va > vb) return dir;
    if (a.nameKey < b.nameKey) return -1;
    if (a.nameKey > b.nameKey) return 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  function recomputeList() {
    const terms = view.search;
    const list = [];
    const types = new Set();
    for (const e of devices.values()) {
      if (e.type) types.add(e.type);
      if (view.status && e.status !== view.status) continue;
      if (view.type && e.type !== view.type) continue;
      if (terms.length && !terms.every((t) => e.haystack.includes(t))) continue;
      list.push(e);
    }
    list.sort(compare);
    view.list = list;
    view.listDirty = false;
    renderTypeOptions(types);
    if (page.onListChanged) page.onListChanged();
  }

  function renderTypeOptions(types) {
    const sorted = [...types].sort();
    const joined = sorted.join('\u0000');
    if (joined === view.types) return;
    view.types = joined;
    const select = el.filterType;
    const keep = view.type;
    select.replaceChildren(new Option('all', ''));
    for (const t of sorted) select.add(new Option(t, t));
    if (keep && !types.has(keep)) select.add(new Option(keep, keep)); // keep a filter on a type now empty
    select.value = keep;
  }

  // --- rendering --------------------------------------------------------------------------
  function frame() {
    frameRequested = false;
    const t0 = performance.now();
    let countsChanged = applyInbox();
    if (sweepAfterBurst && performance.now() - lastRetainedAt >= SWEEP_QUIET_MS) {
      sweepAfterBurst = false;
      if (sweepStale()) countsChanged = true;
    }
    if (view.listDirty) {
      recomputeList();
      countsChanged = true;
    }
    renderRows();
    if (countsChanged) renderCounts();

    const took = performance.now() - t0;
    stats.renders++;
    stats.lastRenderMs = Math.round(took * 100) / 100;
    stats.maxRenderMs = Math.max(stats.maxRenderMs, stats.lastRenderMs);
    stats.rows = devices.size;
    stats.shown = view.list.length;
    if (stats.firstFullRenderMs === null && summary && typeof summary.total === 'number' &&
        devices.size >= summary.total) {
      stats.firstFullRenderMs = Math.round(performance.now());
    }
  }

  function createRow() {
    const row = document.createElement('div');
    row.className = 'row';
    row.setAttribute('role', 'row');
    row.tabIndex = 0;
    const cells = {};
    for (const name of ['name', 'type', 'hardware', 'status', 'since', 'seen', 'reason']) {
      const cell = document.createElement('span');
      cell.className = `cell c-${name}`;
      cell.setAttribute('role', 'cell');
      row.appendChild(cell);
      cells[name] = cell;
    }
    const pill = document.createElement('span');
    pill.className = 'pill';
    cells.status.appendChild(pill);
    cells.pill = pill;
    row._cells = cells;
    row._entry = null;
    row._index = -1;
    return row;
  }

  function fillRow(row, e, index) {
    const c = row._cells;
    if (row._entry !== e) {
      if (row.dataset.deviceId !== e.id) row.dataset.deviceId = e.id;
      if (row.dataset.status !== e.status) {
        row.dataset.status = e.status;
        c.pill.className = `pill st-${e.status}`;
      }
      setText(c.name, e.name);
      c.name.title = `${e.name}\n${e.id}`;
      setText(c.type, e.type);
      setText(c.hardware, e.hardware);
      setText(c.pill, e.status);
      setText(c.reason, e.reason);
      c.reason.title = e.changedMs === null ? '' : `changed ${absolute(e.changedMs)}`;
      c.seen.title = absolute(e.seenMs);
      c.since.title = e.offlineMs === null ? '' : `offline since ${absolute(e.offlineMs)}`;
      if (e.offlineMs === null) delete c.since.dataset.ms;
      else c.since.dataset.ms = String(e.offlineMs);
      row._entry = e;
    }
    setText(c.seen, ago(e.seenMs));
    setText(c.since, sinceText(e));
    if (row._index !== index) {
      row.style.transform = `translateY(${index * ROW_HEIGHT}px)`;
      row._index = index;
    }
    const selected = e.id === view.selectedId;
    if (row.classList.contains('selected') !== selected) row.classList.toggle('selected', selected);
  }

  function renderRows() {
    const list = view.list;
    const height = `${list.length * ROW_HEIGHT}px`;
    if (el.spacer.style.height !== height) el.spacer.style.height = height;
    el.empty.hidden = list.length > 0;
    if (!list.length) setText(el.empty, devices.size ? 'No device matches the filters.' : 'Waiting for devices…');

    const top = el.viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(list.length, Math.ceil((top + view.viewportHeight) / ROW_HEIGHT) + OVERSCAN);
    const next = new Map();
    const fresh = [];
    for (let i = first; i < last; i++) {
      // A change that keeps a device's place in the list (a new last_seen, say) leaves
      // the list as it is, holding the entry it replaced: take the current one.
      const e = devices.get(list[i].id) || list[i];
      list[i] = e;
      let row = rowsById.get(e.id);
      if (row) {
        rowsById.delete(e.id);
      } else {
        row = rowPool.pop() || createRow();
        fresh.push(row);
      }
      fillRow(row, e, i);
      next.set(e.id, row);
    }
    for (const row of rowsById.values()) {   // rows scrolled or filtered away, or deleted
      row.remove();
      delete row.dataset.deviceId;
      row._entry = null;
      rowPool.push(row);
    }
    if (fresh.length) {
      const fragment = document.createDocumentFragment();
      for (const row of fresh) fragment.appendChild(row);
      el.viewport.appendChild(fragment);
    }
    rowsById = next;
  }

  function renderCounts() {
    let counts;
    if (summary && typeof summary === 'object' && typeof summary.total === 'number') {
      counts = summary;
    } else {
      counts = { online: 0, offline: 0, error: 0, maintenance: 0, total: devices.size };
      for (const e of devices.values()) if (e.status in counts) counts[e.status]++;
    }
    setText(el.counts.total, (counts.total ?? 0).toLocaleString());
    for (const s of STATUSES) setText(el.counts[s], (counts[s] ?? 0).toLocaleString());
    const shown = view.list.length;
    setText(el.shown, shown === devices.size
      ? `${devices.size.toLocaleString()} device${devices.size === 1 ? '' : 's'}`
      : `${shown.toLocaleString()} of ${devices.size.toLocaleString()} devices`);
  }

  // One timer for every relative time on the page.
  function tick() {
    const now = Date.now();
    for (const row of rowsById.values()) {
      if (!row._entry) continue;
      setText(row._cells.seen, ago(row._entry.seenMs, now));
      setText(row._cells.since, sinceText(row._entry, now));
    }
    for (const node of document.querySelectorAll('[data-ago]')) {
      setText(node, ago(Number(node.dataset.ago), now));
    }
    if (stats.service === 'offline' || stats.broker !== 'connected') renderConnection();
  }

  // --- connection and service banners -----------------------------------------------------
  function renderConnection() {
    const broker = stats.broker;
    let service = 'unknown';
    if (broker === 'connected' && fleet && typeof fleet === 'object') {
      service = fleet.status === 'online' ? 'online' : fleet.status === 'offline' ? 'offline' : 'unknown';
    }
    stats.service = service;
    document.body.dataset.broker = broker;
    document.body.dataset.service = service;
    const brokerText = { connecting: 'connecting…', 'no-client': 'not contacted' }[broker] || broker;
    setText(el.brokerState, `broker: ${brokerText}`);
    el.brokerState.className = `link-state ${broker}`;
    const sinceMs = fleet ? parseTime(fleet.since) : null;
    setText(el.serviceState, `service: ${service}`);
    el.serviceState.title = sinceMs === null ? '' : `${service} since ${absolute(sinceMs)}`;
    el.serviceState.className = `link-state ${service}`;

    let text = '';
    let kind = '';
    if (broker === 'no-client') {
      // Not the broker's fault: the page could not load its MQTT client, so it never tried.
      kind = 'client';
      text = 'MQTT.js did not load (node_modules/mqtt/dist/mqtt.min.js is missing), so the page cannot ' +
        'connect to the broker: run `npm ci` in examples/dashboard (./scripts/run.sh does it), then reload.';
    } else if (broker === 'disconnected') {
      kind = 'broker';
      text = `Broker connection down: cannot reach ${BROKER_URL}${lastBrokerError ? ` (${lastBrokerError})` : ''}. ` +
        'Reconnecting… The statuses below may be out of date.';
    } else if (service === 'offline') {
      kind = 'service';
      const when = sinceMs !== null ? ` (since ${absolute(sinceMs)}, ${ago(sinceMs)})`
        : fleetAt !== null ? ` (noticed ${ago(fleetAt)})` : '';
      text = `The fleet-manager service is down${when}. ` +
        'Statuses are not being updated until it returns.';
    }
    el.banner.hidden = !text;
    el.banner.dataset.kind = kind;
    setText(el.banner, text);
    document.body.classList.toggle('stale', broker === 'disconnected' || service === 'offline');
  }

  // --- secure mode: the page's broker account ---------------------------------------------
  // The broker refuses anonymous clients in secure mode, and every account may connect
  // only with its own client id. The page uses, in this order:
  //   1. ?username=...&password=... (the shared dashboard account; client id = username,
  //      so one page at a time: a second one takes over the first's connection);
  //   2. a short-lived account of its own from POST /dashboard/credentials, issued with
  //      the admin token (from #admin_token=... in the URL, which is then removed from
  //      the address bar, or the token already kept for this tab), renewed before it
  //      expires and whenever the broker refuses it;
  //   3. no account (open mode).
  const URL_ACCOUNT = params.get('username')
    ? { username: params.get('username'), password: params.get('password') || '',
        clientId: params.get('client_id') || params.get('username') }
    : null;
  {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.get('admin_token')) {
      sessionStorage.setItem('maestra-admin-token', fragment.get('admin_token'));
      history.replaceState(null, '', location.pathname + location.search);
    }
  }
  let issued = null;            // {username, password, client_id, expires_at} from the service
  let lastIssueAt = -Infinity;
  let renewTimer = 0;
  let mqttClient = null;

  // Asks the service for a dashboard account (at most every 10 s); true when one came.
  async function issueAccount() {
    const token = sessionStorage.getItem('maestra-admin-token');
    if (!token || performance.now() - lastIssueAt < 10000) return false;
    lastIssueAt = performance.now();
    try {
      const r = await fetch(`${API_BASE}/dashboard/credentials`, {
        method: 'POST', headers: { ...authHeaders(), 'Content-Type': 'application/json' },
        body: JSON.stringify({ ttl_seconds: 3600 }),
      });
      if (r.status !== 201) {
        if (r.status === 401 || r.status === 403) lastBrokerError = 'the admin token was refused';
        return false;
      }
      issued = await r.json();
      clearTimeout(renewTimer);
      // Renewed 5 minutes before it expires (the service removes it then).
      const renewIn = Math.max(10000, parseTime(issued.expires_at) - Date.now() - 300000);
      renewTimer = setTimeout(() => { issueAccount().then((ok) => ok && connect()); }, renewIn);
      return true;
    } catch (err) {
      return false;
    }
  }

  function account() {
    if (URL_ACCOUNT) return URL_ACCOUNT;
    if (issued) return { username: issued.username, password: issued.password, clientId: issued.client_id };
    return null;
  }

  // The broker refused our account (MQTT v5 134 bad username or password, 135 not
  // authorized; v3 4 and 5).
  function refused(err) {
    return err && [4, 5, 134, 135].includes(err.code);
  }

  async function start() {
    if (!URL_ACCOUNT && sessionStorage.getItem('maestra-admin-token')) await issueAccount();
    connect();
  }

  function connect() {
    if (typeof mqtt === 'undefined' || typeof mqtt.connect !== 'function') {
      stats.broker = 'no-client';
      setText(el.empty, 'No device data: MQTT.js did not load.');
      renderConnection();
      return;
    }
    if (mqttClient) mqttClient.end(true);
    const own = account();
    const client = mqtt.connect(BROKER_URL, {
      clientId: own ? own.clientId : `maestra-dashboard-${Math.random().toString(16).slice(2, 10)}`,
      protocolVersion: 5,
      clean: true,
      keepalive: 30,
      reconnectPeriod: 1000,
      connectTimeout: 5000,
      resubscribe: false,       // subscribed again on every connect below
      ...(own ? { username: own.username, password: own.password } : {}),
    });
    mqttClient = client;
    client.on('connect', () => {
      if (client !== mqttClient) return;
      if (stats.connectedMs === null) stats.connectedMs = Math.round(performance.now());
      stats.broker = 'connected';
      lastBrokerError = '';
      generation++;
      if (devices.size) {         // a reconnect: drop the rows the broker no longer retains
        sweepAfterBurst = true;
        lastRetainedAt = performance.now();
      }
      client.subscribe([TOPIC_DEVICES, TOPIC_SUMMARY, TOPIC_FLEET], { qos: QOS }, (err) => {
        if (err) console.error('subscribe failed', err);
      });
      // Apart: a read-only account refused it must still get the statuses.
      client.subscribe(TOPIC_COMMANDS, { qos: 0 }, (err) => {
        if (err) console.warn('no live command states:', err.message);
      });
      renderConnection();
    });
    const down = () => {
      if (stats.broker === 'disconnected') return;
      stats.broker = 'disconnected';
      renderConnection();
    };
    client.on('close', () => { if (client === mqttClient) down(); });
    client.on('offline', () => { if (client === mqttClient) down(); });
    client.on('error', (err) => {
      if (client !== mqttClient) return;
      console.warn('mqtt:', err && err.message);
      lastBrokerError = (err && err.message) || '';
      if (refused(err) && !URL_ACCOUNT) {
        if (sessionStorage.getItem('maestra-admin-token')) {
          issueAccount().then((ok) => { if (ok && client === mqttClient) connect(); });
        } else {
          lastBrokerError = 'secure mode: the broker needs an account; open this page with ' +
            '#admin_token=<admin token> (or ?username=…&password=… of the dashboard account)';
        }
      }
      if (stats.broker === 'disconnected') renderConnection();
    });
    client.on('message', (topic, payload, packet) => {
      if (client !== mqttClient) return;
      stats.messages++;
      if (topic.startsWith(COMMANDS_HEAD)) {
        if (page.onCommandMessage) page.onCommandMessage(topic, payload.toString());
        return;
      }
      inbox.set(topic, payload.length ? payload.toString() : '');
      if (packet.retain) lastRetainedAt = performance.now();
      requestFrame();
    });
  }
  // A burst's sweep is due even when no more messages come to trigger a frame.
  setInterval(() => { if (sweepAfterBurst) requestFrame(); }, 500);

  // --- device detail (the only HTTP calls) ------------------------------------------------
  let detailRequest = 0;
  let detailRecord = null;

  function authHeaders() {
    const token = sessionStorage.getItem('maestra-admin-token');
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function openDetail(id) {
    view.selectedId = id;
    detailRecord = null;
    el.detail.hidden = false;
    document.body.classList.add('with-detail');
    renderDetail();
    loadDetail();
    if (page.onDetailOpened) page.onDetailOpened(id);
    requestFrame();
  }

  function closeDetail() {
    view.selectedId = null;
    detailRequest++;
    el.detail.hidden = true;
    document.body.classList.remove('with-detail');
    requestFrame();
  }

  function onSelectedChanged(before, entry) {
    renderDetail();
    if (!before || before.doc.changed_at !== entry.doc.changed_at || before.status !== entry.status) loadDetail();
  }

  async function loadDetail() {
    const id = view.selectedId;
    if (!id) return;
    const request = ++detailRequest;
    const base = `${API_BASE}/devices/${encodeURIComponent(id)}`;
    el.historyNote.textContent = 'Loading…';
    try {
      const [record, history] = await Promise.all([
        fetch(base, { headers: authHeaders() }),
        fetch(`${base}/history?limit=${HISTORY_LIMIT}`, { headers: authHeaders() }),
      ]);
      if (request !== detailRequest) return;
      if (record.status === 401 || record.status === 403 || history.status === 401 || history.status === 403) {
        el.tokenForm.hidden = false;
        el.historyNote.textContent = record.status === 403 ? 'The admin token was refused.' : 'This API needs an admin token.';
        return;
      }
      el.tokenForm.hidden = true;
      detailRecord = record.ok ? await record.json() : null;
      const entries = history.ok ? await history.json() : null;
      if (request !== detailRequest) return;
      renderDetail();
      renderHistory(entries, history.ok ? '' : `History unavailable (HTTP ${history.status}).`);
      loadTelemetry(id, request);
    } catch (err) {
      if (request !== detailRequest) return;
      renderHistory(null, `Cannot reach the API at ${API_BASE}.`);
    }
  }

  function renderDetail() {
    const id = view.selectedId;
    if (!id) return;
    const e = devices.get(id);
    const r = detailRecord;
    setText(el.detailName, e ? e.name : r ? str(r.name) : id);
    const status = e ? e.status : r ? str(r.status) : '';
    el.detailStatus.className = `pill st-${status}`;
    setText(el.detailStatus, status || '—');
    el.detailGone.hidden = Boolean(e);
    el.detail.dataset.deviceId = id;

    const fields = [['ID', id, true]];
    const type = e ? e.type : r && r.device_type;
    const hardware = e ? e.hardware : r && r.hardware_id;
    fields.push(['Type', str(type)], ['Hardware ID', str(hardware), true]);
    const changed = e ? e.changedMs : r && parseTime(r.status_changed_at);
    if (changed) fields.push(['Status since', changed, 'time']);
    if (e && e.reason) fields.push(['Reason', e.reason]);
    const seen = r ? parseTime(r.last_seen) : e && e.seenMs;
    if (seen) fields.push(['Last seen', seen, 'time']);
    if (r) {
      if (r.firmware_version) fields.push(['Firmware', str(r.firmware_version)]);
      if (r.ip_address) fields.push(['IP address', str(r.ip_address), true]);
      if (r.offline_after) fields.push(['Offline after', `${r.offline_after} s`]);
      // Location as text: the record's location, else metadata.location.
      const meta = r.metadata && typeof r.metadata === 'object' && !Array.isArray(r.metadata) ? r.metadata : null;
      const hasLocation = r.location !== null && r.location !== undefined && readable(r.location) !== '';
      const location = hasLocation ? r.location : meta ? meta.location : null;
      const where = readable(location);
      if (where) fields.push(['Location', where, 'location']);
      if (meta) {
        const rest = { ...meta };
        if (!hasLocation) delete rest.location;
        const text = readable(rest, '\n', false);
        if (text) fields.push(['Metadata', text, 'lines']);
      } else if (r.metadata) {
        fields.push(['Metadata', plain(r.metadata), 'lines']);
      }
      const created = parseTime(r.created_at);
      if (created) fields.push(['Registered', created, 'time']);
    }
    const nodes = [];
    for (const [label, value, mode] of fields) {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      if (mode === 'time') {
        const rel = document.createElement('span');
        rel.dataset.ago = String(value);
        rel.textContent = ago(value);
        const abs = document.createElement('span');
        abs.className = 'abs';
        abs.textContent = absolute(value);
        dd.append(rel, ' ', abs);
      } else {
        dd.textContent = value;
        if (mode === true) dd.className = 'mono';
        else if (mode) dd.className = `text-${mode}`;
        if (mode === 'location') dd.id = 'detail-location';
      }
      nodes.push(dt, dd);
    }
    el.detailFields.replaceChildren(...nodes);
  }

  // --- telemetry of the open device: latest values, one metric's last hour, events ---
  // Read from the query routes when the panel opens (never polled).
  async function loadTelemetry(id, request) {
    const base = `${API_BASE}/devices/${encodeURIComponent(id)}`;
    const note = document.getElementById('telemetry-note');
    try {
      const [latest, events] = await Promise.all([
        fetch(`${base}/metrics/latest`, { headers: authHeaders() }),
        fetch(`${base}/events?limit=5`, { headers: authHeaders() }),
      ]);
      if (request !== detailRequest) return;
      const metrics = latest.ok ? (await latest.json()).metrics || {} : {};
      const recent = events.ok ? (await events.json()).events || [] : [];
      if (request !== detailRequest) return;
      const names = Object.keys(metrics).sort();
      note.textContent = latest.ok ? (names.length ? '' : 'No metrics received yet.') : `Metrics unavailable (HTTP ${latest.status}).`;
      const nodes = [];
      for (const name of names) {
        const m = metrics[name];
        const dt = document.createElement('dt');
        dt.textContent = name;
        const dd = document.createElement('dd');
        const ms = parseTime(m.time);
        dd.textContent = `${m.value}${m.unit ? ` ${m.unit}` : ''}`;
        dd.title = absolute(ms);
        nodes.push(dt, dd);
      }
      document.getElementById('latest-metrics').replaceChildren(...nodes);
      renderEvents(recent);
      if (names.length) await loadChart(base, names[0], request);
      else document.getElementById('metric-chart').hidden = true;
    } catch (err) {
      if (request === detailRequest) note.textContent = `Cannot reach the API at ${API_BASE}.`;
    }
  }

  async function loadChart(base, name, request) {
    const from = new Date(Date.now() - 3600 * 1000).toISOString();
    const r = await fetch(`${base}/metrics?name=${encodeURIComponent(name)}&bucket=1m&agg=avg&from=${from}`,
      { headers: authHeaders() });
    if (request !== detailRequest) return;
    const svg = document.getElementById('metric-chart');
    const buckets = r.ok ? (await r.json()).buckets || [] : [];
    if (request !== detailRequest) return;
    svg.hidden = buckets.length === 0;
    document.getElementById('chart-note').textContent = buckets.length ? `${name}, last hour (1-minute averages)` : '';
    if (!buckets.length) return;
    const values = buckets.map((b) => b.value);
    const low = Math.min(...values), high = Math.max(...values);
    const start = Date.now() - 3600 * 1000;
    const points = buckets.map((b) => {
      const x = Math.max(0, Math.min(300, ((parseTime(b.time) - start) / (3600 * 1000)) * 300));
      const y = high === low ? 40 : 75 - ((b.value - low) / (high - low)) * 70;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', points.join(' '));
    line.setAttribute('class', 'chart-line');
    const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    title.textContent = `${name}: ${low} to ${high}`;
    svg.replaceChildren(title, line);
  }

  function renderEvents(events) {
    const items = events.map((e) => {
      const li = document.createElement('li');
      const pill = document.createElement('span');
      pill.className = `pill small sev-${str(e.severity)}`;
      pill.textContent = str(e.severity);
      const ms = parseTime(e.time);
      li.title = absolute(ms);
      li.append(pill, ` ${str(e.event_type)}${e.message ? ` — ${str(e.message)}` : ''} · ${ago(ms)}`);
      return li;
    });
    if (!items.length) {
      const li = document.createElement('li');
      li.className = 'note';
      li.textContent = 'No events.';
      items.push(li);
    }
    document.getElementById('events-list').replaceChildren(...items);
  }

  function renderHistory(entries, note) {
    const rows = [];
    for (const h of Array.isArray(entries) ? entries : []) {
      const tr = document.createElement('tr');
      const change = document.createElement('td');
      const from = document.createElement('span');
      from.className = `pill small st-${str(h.from)}`;
      from.textContent = h.from ? str(h.from) : 'new';
      const to = document.createElement('span');
      to.className = `pill small st-${str(h.to)}`;
      to.textContent = str(h.to);
      change.append(from, ' → ', to);
      const reason = document.createElement('td');
      reason.textContent = str(h.reason);
      const at = document.createElement('td');
      const ms = parseTime(h.at);
      at.title = absolute(ms);
      if (ms !== null) at.dataset.ago = String(ms);
      at.textContent = ago(ms);
      tr.append(change, reason, at);
      rows.push(tr);
    }
    el.historyBody.replaceChildren(...rows);
    el.historyNote.textContent = note || (rows.length ? '' : 'No status change recorded yet.');
  }

  // --- events -------------------------------------------------------------------------------
  el.viewport.addEventListener('scroll', requestFrame, { passive: true });
  new ResizeObserver(() => {
    view.viewportHeight = el.viewport.clientHeight || view.viewportHeight;
    requestFrame();
  }).observe(el.viewport);

  el.viewport.addEventListener('click', (event) => {
    const row = event.target.closest('.row');
    if (row && row.dataset.deviceId) openDetail(row.dataset.deviceId);
  });
  el.viewport.addEventListener('keydown', (event) => {
    const row = event.target.closest('.row');
    if (row && row.dataset.deviceId && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      openDetail(row.dataset.deviceId);
    }
  });
  $('detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && view.selectedId) closeDetail();
  });
  el.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem('maestra-admin-token', el.tokenInput.value.trim());
    el.tokenInput.value = '';
    loadDetail();
    if (stats.broker !== 'connected' && !URL_ACCOUNT) {
      lastIssueAt = -Infinity;
      issueAccount().then((ok) => ok && connect());
    }
  });

  function setFilter(changes) {
    Object.assign(view, changes);
    view.listDirty = true;
    el.viewport.scrollTop = 0;
    for (const button of document.querySelectorAll('[data-filter-status]')) {
      button.setAttribute('aria-pressed', String(button.dataset.filterStatus === view.status));
    }
    el.filterStatus.value = view.status;
    requestFrame();
  }
  let searchTimer = 0;
  el.search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      setFilter({ search: el.search.value.toLowerCase().split(/\s+/).filter(Boolean) });
    }, 80);
  });
  el.filterStatus.addEventListener('change', () => setFilter({ status: el.filterStatus.value }));
  el.filterType.addEventListener('change', () => setFilter({ type: el.filterType.value }));
  for (const button of document.querySelectorAll('[data-filter-status]')) {
    button.addEventListener('click', () => {
      const status = button.dataset.filterStatus;
      setFilter({ status: status && status === view.status ? '' : status });
    });
  }
  function renderSortHeaders() {
    for (const h of document.querySelectorAll('[data-sort]')) {
      if (h.dataset.sort === view.sortKey) {
        h.dataset.dir = view.sortDir > 0 ? 'asc' : 'desc';
        h.setAttribute('aria-sort', view.sortDir > 0 ? 'ascending' : 'descending');
      } else {
        delete h.dataset.dir;
        h.removeAttribute('aria-sort');
      }
    }
  }
  for (const header of document.querySelectorAll('[data-sort]')) {
    header.addEventListener('click', () => {
      const key = header.dataset.sort;
      const sortDir = view.sortKey === key ? -view.sortDir : key === 'seen' ? -1 : 1;
      setFilter({ sortKey: key, sortDir });
      saveSort();
      renderSortHeaders();
    });
  }
  renderSortHeaders();

  setInterval(tick, 1000);
  renderConnection();
  renderCounts();
  start();
})();
