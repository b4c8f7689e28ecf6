// heapwatch's page: wires the API to the panels, keeps the view state in the
// URL hash, and refreshes every few seconds without losing zoom or search.
//
// View state (all of it in the hash, so a link reproduces the view):
//   pid, type, tab (flame|diff|alerts), zoom (repeated: frame names from the
//   root down), search, base (snapshot id for the diff), width (diff widths).
import { Api, ApiError } from './api.js';
import { FlameGraph } from './flame.js';
import { TimelineChart } from './timeline.js';
import {
  h, renderPicker, defaultPid, renderSummary, renderSuspects, renderAlerts, renderAlertStrip,
} from './panels.js';
import { formatValue, formatPercent, formatTime, formatBytes } from './format.js';

const kRefreshMs = 5000;
const kTypes = ['inuse_space', 'inuse_objects', 'alloc_space', 'alloc_objects'];
const kTabs = ['flame', 'diff', 'alerts'];
const kDefaults = { pid: null, type: 'inuse_space', tab: 'flame', zoom: [], search: '', base: null, width: 'now' };

const $ = (id) => document.getElementById(id);

const state = { ...kDefaults };
let processes = [];
let snapshots = [];
let alerts = [];
let leaks = null;
let timelineData = null;
let lastProfile = { key: null, text: null, profile: null };
let selectedSuspect = null;
let autoRefresh = true;
let timer = null;
let generation = 0;
let inflight = null;
let loads = 0;
let lastOkAt = null;
let lastError = null;

const api = new Api(askToken);
const flame = new FlameGraph($('flame'), $('tooltip'), { onZoom: onUserZoom });
const timeline = new TimelineChart($('timeline'), $('timeline-legend'));

// ---- URL hash ----------------------------------------------------------------

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const s = { ...kDefaults, zoom: [] };
  const pid = parseInt(p.get('pid'), 10);
  if (Number.isFinite(pid)) s.pid = pid;
  if (kTypes.includes(p.get('type'))) s.type = p.get('type');
  if (kTabs.includes(p.get('tab'))) s.tab = p.get('tab');
  s.zoom = p.getAll('zoom');
  s.search = p.get('search') || '';
  s.base = p.get('base') || null;
  if (p.get('width') === 'both') s.width = 'both';
  return s;
}

let writtenHash = null;
function writeHash() {
  const p = new URLSearchParams();
  if (state.pid !== null) p.set('pid', String(state.pid));
  p.set('type', state.type);
  p.set('tab', state.tab);
  for (const z of state.zoom) p.append('zoom', z);
  if (state.search) p.set('search', state.search);
  if (state.base) p.set('base', state.base);
  if (state.width !== 'now') p.set('width', state.width);
  const hash = `#${p.toString()}`;
  writtenHash = hash;
  if (hash !== location.hash) history.replaceState(null, '', hash);
}

window.addEventListener('hashchange', () => {
  if (location.hash === writtenHash) return;
  applyState(readHash());
});

function applyState(s) {
  const pidChanged = s.pid !== state.pid;
  Object.assign(state, s);
  if (pidChanged) resetProcessView();
  syncControls();
  flame.clearFocus();
  flame.setZoomPath(state.zoom);
  updateSearch();
  refresh();
}

// ---- controls ----------------------------------------------------------------

function syncControls() {
  for (const input of document.querySelectorAll('#type-picker input')) input.checked = input.value === state.type;
  if ($('search').value !== state.search) $('search').value = state.search;
  $('diff-width').value = state.width;
  for (const tab of document.querySelectorAll('[role=tab]')) {
    const on = tab.dataset.tab === state.tab;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
  }
  $('view-profile').hidden = state.tab === 'alerts';
  $('view-alerts').hidden = state.tab !== 'alerts';
  $('view-profile').setAttribute('aria-labelledby', `tab-${state.tab === 'diff' ? 'diff' : 'flame'}`);
  $('diff-controls').hidden = state.tab !== 'diff';
  $('refresh-toggle').textContent = autoRefresh ? 'Pause' : 'Resume';
  $('refresh-toggle').setAttribute('aria-pressed', String(!autoRefresh));
}

function setTab(tab) {
  if (tab === state.tab) return;
  state.tab = tab;
  syncControls();
  writeHash();
  refresh();
}

function resetProcessView() {
  state.zoom = [];
  selectedSuspect = null;
  lastProfile = { key: null, text: null, profile: null };
  flame.clearFocus();
  leaks = null;
  timelineData = null;
}

$('pid-select').addEventListener('change', (e) => {
  state.pid = parseInt(e.target.value, 10);
  state.base = null;
  resetProcessView();
  flame.setZoomPath([]);
  writeHash();
  refresh();
});

$('type-picker').addEventListener('change', (e) => {
  if (!kTypes.includes(e.target.value)) return;
  state.type = e.target.value;
  writeHash();
  refresh();
});

for (const tab of document.querySelectorAll('[role=tab]')) {
  tab.addEventListener('click', () => setTab(tab.dataset.tab));
  tab.addEventListener('keydown', (e) => {
    const k = kTabs.indexOf(state.tab);
    const next = e.key === 'ArrowRight' ? kTabs[(k + 1) % kTabs.length]
      : e.key === 'ArrowLeft' ? kTabs[(k + kTabs.length - 1) % kTabs.length] : null;
    if (!next) return;
    e.preventDefault();
    setTab(next);
    $(`tab-${next}`).focus();
  });
}

let searchTimer = null;
$('search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.search = $('search').value;
    updateSearch();
    writeHash();
  }, 120);
});
$('search').addEventListener('keydown', (e) => {
  if (e.key === 'Escape') {
    $('search').value = '';
    state.search = '';
  } else if (e.key === 'Enter') {
    state.search = $('search').value;
  } else return;
  clearTimeout(searchTimer);
  updateSearch();
  writeHash();
});
document.addEventListener('keydown', (e) => {
  const t = e.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
  if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
    e.preventDefault();
    $('search').focus();
    $('search').select();
  }
});

$('reset-zoom').addEventListener('click', () => flame.resetZoom());
$('refresh-now').addEventListener('click', () => refresh());
$('refresh-toggle').addEventListener('click', () => setAutoRefresh(!autoRefresh));
$('base-select').addEventListener('change', (e) => {
  state.base = e.target.value || null;
  writeHash();
  refresh();
});
$('diff-width').addEventListener('change', (e) => {
  state.width = e.target.value;
  writeHash();
  refresh();
});
$('take-snapshot').addEventListener('click', takeSnapshot);

function setAutoRefresh(on) {
  autoRefresh = on;
  syncControls();
  if (on) refresh();
  else {
    clearTimeout(timer);
    updateStatus();
  }
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && autoRefresh) refresh();
});

// ---- zoom, search, focus ------------------------------------------------------

function onUserZoom(path) {
  state.zoom = path;
  selectedSuspect = null;
  flame.clearFocus();
  renderSuspects($('suspects').tBodies[0], leaks, selectedSuspect, focusSuspect);
  writeHash();
  updateBreadcrumb();
  updateSearch();
}

function updateBreadcrumb() {
  const path = flame.zoomPath();
  const nav = $('breadcrumb');
  const crumbs = [h('button', {
    type: 'button', className: 'crumb', 'aria-current': path.length ? null : 'location',
    onclick: () => zoomToPrefix([]),
  }, 'all')];
  path.forEach((name, k) => {
    crumbs.push(h('span', { className: 'sep', 'aria-hidden': 'true' }, '›'));
    crumbs.push(h('button', {
      type: 'button', className: 'crumb', title: name, 'aria-current': k === path.length - 1 ? 'location' : null,
      onclick: () => zoomToPrefix(path.slice(0, k + 1)),
    }, name));
  });
  const missing = state.zoom.length - path.length;
  if (missing > 0 && !flame.isEmpty()) {
    crumbs.push(h('span', { className: 'crumb-missing', title: state.zoom.slice(path.length).join(' › ') },
      `(${missing} frame${missing > 1 ? 's' : ''} of the saved zoom not in this profile)`));
  }
  nav.replaceChildren(...crumbs);
  // Long paths: keep the innermost crumbs in view.
  nav.scrollLeft = nav.scrollWidth;
  $('reset-zoom').disabled = !path.length;
}

function zoomToPrefix(prefix) {
  state.zoom = prefix;
  flame.setZoomPath(prefix, true);
  onUserZoom(flame.zoomPath());
}

function updateSearch() {
  const result = flame.setSearch(state.search);
  const el = $('search-result');
  if (!state.search.trim()) {
    el.textContent = '';
    return;
  }
  if (!result || !result.count) {
    el.textContent = 'no match';
    return;
  }
  const unit = (lastProfile.profile && lastProfile.profile.unit) || 'bytes';
  let text = `${result.count} frame${result.count > 1 ? 's' : ''} · ${formatValue(result.value, unit)} · ` +
    `${formatPercent(result.share)} of total`;
  if (state.zoom.length && flame.zoomPath().length) text += ` (${formatPercent(result.zoomShare)} of zoomed)`;
  el.textContent = text;
}

function focusSuspect(s) {
  selectedSuspect = s.stack_id;
  if (state.tab === 'alerts') setTab('flame');
  const frames = (s.frames || []).map((f) => f.name).reverse();
  const path = flame.focusStack(frames, s.function);
  if (path) {
    state.zoom = path;
    setFlameNote(null);
  } else {
    setFlameNote(`The stack of ${s.function} is not in this ${state.type} profile.`);
  }
  renderSuspects($('suspects').tBodies[0], leaks, selectedSuspect, focusSuspect);
  writeHash();
  updateBreadcrumb();
  updateSearch();
  const panel = $('profile-panel');
  if (panel.getBoundingClientRect().top > window.innerHeight - 120) panel.scrollIntoView({ block: 'start' });
}

// ---- loading -------------------------------------------------------------------

function schedule() {
  clearTimeout(timer);
  // A hidden tab does not poll; it refreshes when shown again (visibilitychange).
  if (autoRefresh) timer = setTimeout(() => (document.hidden ? schedule() : refresh()), kRefreshMs);
}

async function refresh() {
  const my = ++generation;
  if (inflight) inflight.abort();
  const ctl = new AbortController();
  inflight = ctl;
  clearTimeout(timer);
  $('refresh-status').textContent = 'updating…';
  try {
    const [procs, alertsResp, snapsResp] = await Promise.allSettled([
      api.getJson('/api/v1/processes', ctl.signal),
      api.getJson('/api/v1/alerts', ctl.signal),
      api.getJson('/api/v1/snapshots', ctl.signal),
    ]);
    if (my !== generation) return;
    if (procs.status === 'rejected') throw procs.reason;
    processes = procs.value.processes || [];
    alerts = alertsResp.status === 'fulfilled' ? alertsResp.value.alerts || [] : alerts;
    snapshots = snapsResp.status === 'fulfilled' ? snapsResp.value.snapshots || [] : snapshots;
    renderGlobal(alertsResp.status === 'rejected' ? alertsResp.reason : null);

    $('no-processes').hidden = processes.length > 0;
    $('dashboard').hidden = processes.length === 0;
    if (!processes.length) {
      renderPicker($('pid-select'), [], null);
      $('proc-exe').textContent = '';
      setBanner(null);
      return;
    }
    let proc = processes.find((p) => p.pid === state.pid);
    let notice = null;
    if (!proc) {
      // A pid from a link that is gone: say so, and start that view afresh.
      if (state.pid !== null) {
        notice = `Process ${state.pid} is not known to heapwatchd; showing another one.`;
        resetProcessView();
        flame.setZoomPath([]);
      }
      state.pid = defaultPid(processes);
      proc = processes.find((p) => p.pid === state.pid);
    }
    renderPicker($('pid-select'), processes, state.pid);
    $('pprof-link').href = `/debug/pprof/heap?pid=${state.pid}`;
    $('pprof-link').download = `heap-${state.pid}.pb.gz`;
    $('proc-exe').textContent = proc.exe || '';
    $('proc-exe').title = proc.exe || '';

    await loadProcess(proc, ctl.signal, my);
    if (my !== generation) return;
    setBanner(notice ? { text: notice, level: 'warn' } : null);
    lastOkAt = Date.now() / 1000;
    lastError = null;
  } catch (e) {
    if (e.name === 'AbortError' || my !== generation) return;
    lastError = e;
    setBanner(errorBanner(e));
  } finally {
    if (my === generation) {
      inflight = null;
      loads++;
      updateStatus();
      writeHash();
      schedule();
    }
  }
}

async function loadProcess(proc, signal, my) {
  const pid = proc.pid;
  const mySnaps = snapshots.filter((s) => s.pid === pid);
  if (state.tab === 'diff' && !state.base && mySnaps.length) state.base = mySnaps[0].id;
  renderBaseSelect(mySnaps);
  const wantDiff = state.tab === 'diff';
  const base = wantDiff ? state.base : null;
  let profilePath = `/api/v1/profile?pid=${pid}&type=${state.type}`;
  if (base) profilePath += `&base=${encodeURIComponent(base)}`;
  const skipProfile = wantDiff && !base;
  const [prof, tl, lk] = await Promise.allSettled([
    skipProfile ? Promise.resolve(null) : api.getText(profilePath, signal),
    api.getJson(`/api/v1/timeline?pid=${pid}`, signal),
    api.getJson(`/api/v1/leaks?pid=${pid}`, signal),
  ]);
  if (my !== generation) return;
  for (const r of [prof, tl, lk]) {
    if (r.status === 'rejected' && (r.reason.name === 'AbortError' || r.reason.status === 0)) throw r.reason;
  }
  timelineData = tl.status === 'fulfilled' ? tl.value : null;
  leaks = lk.status === 'fulfilled' ? lk.value : null;
  setPanelError('timeline-panel', tl.status === 'rejected' ? tl.reason : null);
  setPanelError('suspects-panel', lk.status === 'rejected' ? lk.reason : null);
  timeline.setData(timelineData);
  renderSummary($('summary'), proc, timelineData, leaks);
  renderSuspects($('suspects').tBodies[0], leaks, selectedSuspect, focusSuspect);

  if (skipProfile) {
    showProfile(null, null, 'No snapshot of this process yet. Take one now, let it run, and compare: '
      + 'the diff shows what grew since.');
  } else if (prof.status === 'rejected') {
    showProfile(null, null, `Profile unavailable: ${prof.reason.message}`, true);
  } else {
    const key = `${pid}|${state.type}|${base}|${state.width}`;
    if (prof.value !== lastProfile.text || key !== lastProfile.key) {
      let profile;
      try {
        profile = JSON.parse(prof.value);
      } catch {
        showProfile(null, null, 'Profile unavailable: malformed JSON from heapwatchd', true);
        return;
      }
      showProfile(profile, key, null);
      lastProfile.text = prof.value;
    }
  }
}

function showProfile(profile, key, message, isError = false) {
  lastProfile = { key, text: null, profile };
  if (!profile) {
    flame.setData(null);
    setFlameNote(message, isError);
    $('profile-total').textContent = '';
  } else {
    const diff = state.tab === 'diff' && !!state.base;
    flame.setData(profile.root, { unit: profile.unit, mode: diff ? 'diff' : 'normal', diffWidth: state.width });
    flame.setZoomPath(state.zoom);
    const root = profile.root || {};
    const empty = !root.value && !(diff && root.base);
    setFlameNote(empty ? emptyProfileText() : null);
    const unit = profile.unit;
    if (diff) {
      const delta = root.delta ?? (root.value || 0) - (root.base || 0);
      $('profile-total').textContent = `now ${formatValue(root.value || 0, unit)} · snapshot ` +
        `${formatValue(root.base || 0, unit)} · change ${delta >= 0 ? '+' : ''}${formatValue(delta, unit)}`;
    } else {
      $('profile-total').textContent = `total ${formatValue(profile.total ?? root.value ?? 0, unit)}`;
    }
  }
  updateBreadcrumb();
  updateSearch();
}

function emptyProfileText() {
  return state.type.startsWith('inuse')
    ? 'Empty profile: no live sampled allocations yet. Allocations are sampled about once per '
      + `${formatBytes((processes.find((p) => p.pid === state.pid) || {}).sample_bytes || 524288)} allocated.`
    : 'Empty profile: no sampled allocations yet.';
}

function setFlameNote(text, isError = false) {
  const el = $('flame-message');
  el.hidden = !text;
  el.textContent = text || '';
  el.classList.toggle('error', !!isError);
}

function renderGlobal(alertsError) {
  const firing = renderAlertStrip($('alert-strip'), alerts, () => setTab('alerts'));
  $('alert-count').textContent = alerts.length ? `${firing} firing · ${alerts.length}` : '';
  renderAlerts($('alerts').tBodies[0], alerts, (id) => `/api/v1/snapshots/${encodeURIComponent(id)}`);
  if (alertsError) {
    $('alerts').tBodies[0].replaceChildren(h('tr', { className: 'empty' },
      h('td', { colSpan: 7 }, `Alerts unavailable: ${alertsError.message}`)));
  }
}

function renderBaseSelect(mySnaps) {
  const sel = $('base-select');
  const opts = mySnaps.map((s) => h('option', { value: s.id, selected: s.id === state.base },
    `${formatTime(s.time)} · ${s.reason || 'snapshot'}`));
  if (state.base && !mySnaps.some((s) => s.id === state.base)) {
    opts.unshift(h('option', { value: state.base, selected: true }, `${state.base} (not listed)`));
  }
  if (!opts.length) opts.push(h('option', { value: '' }, 'no snapshots yet'));
  sel.replaceChildren(...opts);
  sel.disabled = !mySnaps.length && !state.base;
}

async function takeSnapshot() {
  const btn = $('take-snapshot');
  btn.disabled = true;
  try {
    const r = await api.postJson(`/api/v1/snapshots?pid=${state.pid}`);
    state.base = r.id;
    setBanner({ text: `Snapshot ${r.id} taken; the diff shows what changes from now on.`, level: 'info' });
    writeHash();
    await refresh();
  } catch (e) {
    setBanner(errorBanner(e));
  } finally {
    btn.disabled = false;
  }
}

function setPanelError(panelId, err) {
  const el = $(panelId).querySelector('.panel-error');
  el.hidden = !err;
  el.textContent = err ? err.message : '';
}

function errorBanner(e) {
  if (e instanceof ApiError && e.status === 0) {
    return { text: 'Cannot reach heapwatchd — is the collector running? '
      + `Retrying every ${kRefreshMs / 1000} s.${lastOkAt ? ` Data shown is from ${formatTime(lastOkAt)}.` : ''}`, level: 'error' };
  }
  if (e instanceof ApiError && e.status === 401) {
    return { text: 'heapwatchd needs an access token.', level: 'error', action: ['Enter token', () => refresh()] };
  }
  return { text: `Error: ${e.message}`, level: 'error' };
}

function setBanner(b) {
  const el = $('banner');
  el.hidden = !b;
  $('dashboard').classList.toggle('stale', !!(b && b.level === 'error'));
  if (!b) {
    el.replaceChildren();
    return;
  }
  el.className = `banner ${b.level}`;
  el.replaceChildren(h('span', null, b.text));
  if (b.action) el.append(h('button', { type: 'button', onclick: b.action[1] }, b.action[0]));
}

function updateStatus() {
  const el = $('refresh-status');
  const when = lastOkAt ? `updated ${formatTime(lastOkAt)}` : lastError ? 'not loaded' : '';
  el.textContent = autoRefresh ? `${when} · every ${kRefreshMs / 1000} s` : `${when} · paused`;
}

function askToken(reason) {
  const dialog = $('token-dialog');
  $('token-reason').textContent = reason;
  $('token-input').value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const v = $('token-input').value;
      resolve(dialog.returnValue === 'ok' && v ? v : null);
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

// ---- start ---------------------------------------------------------------------

// heapwatchd's "/?token=T" sets a cookie the API accepts; keep the token out of
// the address bar, so that copied links do not carry it.
if (new URLSearchParams(location.search).has('token')) {
  history.replaceState(null, '', location.pathname + location.hash);
}
Object.assign(state, readHash());
syncControls();
flame.setZoomPath(state.zoom);
writeHash();
refresh();

// A small surface for people debugging the page and for the browser tests.
window.heapwatch = {
  flame, timeline, state, api, refresh, setAutoRefresh,
  get loads() { return loads; },
  get profile() { return lastProfile.profile; },
  get leaks() { return leaks; },
  get autoRefresh() { return autoRefresh; },
};
