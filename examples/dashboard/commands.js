/*
 * examples/dashboard/commands.js — commands from the dashboard: the "Send a
 * command" form and the list of a device's recent commands in its detail panel,
 * and "Send to the shown devices" for the filtered set. It owns only those: the
 * page (app.js) hands it the API base, the admin token headers, the selected
 * device, the filtered list and every message on `<prefix>/commands/#`, where
 * the service publishes each state change of a command (not retained), so the
 * states shown move live (queued → sent → delivered → succeeded ...).
 *
 * Fan-out: the status filter alone sends {"status"}, the type filter alone
 * {"device_type"}, anything else the ids of the shown devices (at most 10,000).
 */
(() => {
  'use strict';
  const page = window.__maestraPage;
  if (!page) return;
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('command-form'), name: $('command-name'), params: $('command-params'), note: $('command-note'),
    body: $('commands-body'), fanout: $('fanout-form'), fanoutName: $('fanout-name'),
    fanoutSend: $('fanout-send'), fanoutNote: $('fanout-note'),
  };
  const LIMIT = 10;
  const FANOUT_MAX = 10000;
  const TERMINAL = new Set(['succeeded', 'failed', 'rejected', 'timed_out', 'expired', 'canceled']);
  /** command id -> the latest document seen of the selected device's commands */
  let shown = new Map();
  let request = 0;

  function text(value) { return value === null || value === undefined ? '' : String(value); }

  function parseParams() {
    const raw = el.params.value.trim();
    if (!raw) return {};
    let value;
    try { value = JSON.parse(raw); } catch (err) { throw new Error('params must be JSON, e.g. {"delay": 5}'); }
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('params must be a JSON object');
    return value;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${body.error || response.status}: ${body.detail || ''}`;
    } catch (err) {
      return `HTTP ${response.status}`;
    }
  }

  function render() {
    const rows = [...shown.values()]
      .sort((a, b) => text(b.created_at).localeCompare(text(a.created_at)))
      .slice(0, LIMIT)
      .map((c) => {
        const tr = document.createElement('tr');
        tr.dataset.commandId = c.id;
        const name = document.createElement('td');
        name.textContent = text(c.name);
        name.title = JSON.stringify(c.params || {});
        const state = document.createElement('td');
        const pill = document.createElement('span');
        pill.className = `pill small cmd-${text(c.state)}`;
        pill.textContent = text(c.state);
        state.append(pill);
        if (c.error) state.title = text(c.error);
        const when = document.createElement('td');
        const ms = Date.parse(c.updated_at || c.created_at);
        when.textContent = Number.isNaN(ms) ? '' : new Date(ms).toLocaleTimeString();
        when.title = text(c.updated_at || c.created_at);
        tr.append(name, state, when);
        return tr;
      });
    el.body.replaceChildren(...rows);
  }

  async function load(id) {
    const mine = ++request;
    shown = new Map();
    render();
    if (!id) return;
    try {
      const r = await fetch(`${page.apiBase}/devices/${encodeURIComponent(id)}/commands?limit=${LIMIT}`,
        { headers: page.authHeaders() });
      if (mine !== request) return;
      if (!r.ok) {
        el.note.textContent = r.status === 401 || r.status === 403 ? 'Commands need the admin token.'
          : r.status === 404 ? '' : `Commands unavailable (${await errorText(r)}).`;
        return;
      }
      const list = await r.json();
      if (mine !== request || !Array.isArray(list)) return;
      for (const c of list) if (!shown.has(c.id)) shown.set(c.id, c);
      render();
    } catch (err) {
      if (mine === request) el.note.textContent = `Cannot reach the API at ${page.apiBase}.`;
    }
  }

  // A state change published by the service: <prefix>/commands/<device id>/<command id>.
  page.onCommandMessage = (topic, payload) => {
    const parts = topic.split('/');
    const deviceId = parts[parts.length - 2];
    if (deviceId !== page.selectedId()) return;
    let doc;
    try { doc = JSON.parse(payload); } catch (err) { return; }
    if (!doc || typeof doc !== 'object' || !doc.id) return;
    const before = shown.get(doc.id);
    // Never backwards: a terminal state stays, and an older update does not replace a newer one.
    if (before && (TERMINAL.has(before.state) ||
        text(doc.updated_at) < text(before.updated_at))) return;
    shown.set(doc.id, doc);
    render();
  };
  page.onDetailOpened = (id) => { el.note.textContent = ''; load(id); };

  el.form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const id = page.selectedId();
    if (!id) return;
    let body;
    try {
      body = { name: el.name.value.trim(), params: parseParams() };
    } catch (err) {
      el.note.textContent = err.message;
      return;
    }
    el.note.textContent = 'Sending…';
    try {
      const r = await fetch(`${page.apiBase}/devices/${encodeURIComponent(id)}/commands`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', ...page.authHeaders() },
        body: JSON.stringify(body),
      });
      if (!r.ok) {
        el.note.textContent = r.status === 401 || r.status === 403 ? 'Sending a command needs the admin token.'
          : `Not sent: ${await errorText(r)}`;
        if (r.status === 401 || r.status === 403) page.askToken();
        return;
      }
      const c = await r.json();
      if (id === page.selectedId() && !shown.has(c.id)) shown.set(c.id, c);
      el.note.textContent = `Command ${c.name} stored (${c.state}).`;
      el.name.value = '';
      render();
    } catch (err) {
      el.note.textContent = `Cannot reach the API at ${page.apiBase}.`;
    }
  });

  function fanoutTarget() {
    const f = page.filter();
    if (f.status && !f.type && !f.search.length) return { body: { status: f.status }, what: `every ${f.status} device` };
    if (f.type && !f.status && !f.search.length) return { body: { device_type: f.type }, what: `every device of type ${f.type}` };
    const ids = page.shownIds();
    return { body: { device_ids: ids.slice(0, FANOUT_MAX) }, what: `${Math.min(ids.length, FANOUT_MAX)} shown devices`, count: ids.length };
  }

  function renderFanout() {
    const target = fanoutTarget();
    el.fanoutSend.textContent = `Send to ${target.what}`;
    el.fanoutSend.disabled = target.count === 0;
  }
  page.onListChanged = renderFanout;

  el.fanout.addEventListener('submit', async (event) => {
    event.preventDefault();
    const target = fanoutTarget();
    const name = el.fanoutName.value.trim();
    if (!name) return;
    el.fanoutNote.textContent = 'Sending…';
    try {
      const r = await fetch(`${page.apiBase}/commands`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', ...page.authHeaders() },
        body: JSON.stringify({ name, ...target.body }),
      });
      if (!r.ok) {
        el.fanoutNote.textContent = r.status === 401 || r.status === 403 ? 'Needs the admin token (open a device to enter it).'
          : `Not sent: ${await errorText(r)}`;
        return;
      }
      const list = await r.json();
      el.fanoutNote.textContent = `${Array.isArray(list) ? list.length : 0} commands stored.`;
      el.fanoutName.value = '';
      if (page.selectedId()) load(page.selectedId());
    } catch (err) {
      el.fanoutNote.textContent = `Cannot reach the API at ${page.apiBase}.`;
    }
  });
  renderFanout();
})();
