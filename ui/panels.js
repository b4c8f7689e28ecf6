// The page's DOM panels: process picker, summary cards, leak-suspects table,
// alerts. Each render function replaces its element's content from API data.
// Text from the API goes in through textContent only (names may hold '<').
import {
  formatBytes, formatCount, formatDuration, formatPercent, formatRate, formatTime,
  shortLocation, basename,
} from './format.js';

/** h('td', {className: 'x', title: 't'}, 'text', child, ...) -> element. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k in el && k !== 'list') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// ---- process picker -----------------------------------------------------------

export function processLabel(p) {
  const exe = basename(p.exe) || '?';
  return `${p.pid} · ${exe}${p.state === 'exited' ? ' (exited)' : ''}`;
}

export function renderPicker(select, processes, pid) {
  const sorted = processes.slice().sort((a, b) =>
    (a.state === 'exited') - (b.state === 'exited') || (b.heap_bytes || 0) - (a.heap_bytes || 0));
  const running = sorted.filter((p) => p.state !== 'exited');
  const exited = sorted.filter((p) => p.state === 'exited');
  const option = (p) => h('option', {
    value: String(p.pid), selected: p.pid === pid, className: p.state === 'exited' ? 'exited' : '',
    title: `${p.exe} — ${p.state}, heap ${formatBytes(p.heap_bytes)}`,
  }, processLabel(p));
  const groups = [];
  if (running.length) groups.push(h('optgroup', { label: 'running' }, running.map(option)));
  if (exited.length) groups.push(h('optgroup', { label: 'exited' }, exited.map(option)));
  select.replaceChildren(...groups);
  select.disabled = !processes.length;
  if (pid !== null) select.value = String(pid);
}

/** Default process: the running one holding the most heap, else the newest. */
export function defaultPid(processes) {
  const running = processes.filter((p) => p.state !== 'exited');
  const pool = running.length ? running : processes;
  let best = null;
  for (const p of pool) {
    if (!best || (p.heap_bytes || 0) > (best.heap_bytes || 0)) best = p;
  }
  return best ? best.pid : null;
}

// ---- summary cards ------------------------------------------------------------

function card(label, value, detail, tone, id) {
  return h('div', { className: `card ${tone || ''}`, dataset: { card: id } },
    h('div', { className: 'card-label' }, label),
    h('div', { className: 'card-value' }, value),
    h('div', { className: 'card-detail' }, detail || '\u00a0'));
}

/** proc: from /api/v1/processes; timeline and leaks may be null. */
export function renderSummary(el, proc, timeline, leaks) {
  if (!proc) {
    el.replaceChildren();
    return;
  }
  const limit = proc.limit_bytes ?? (timeline && timeline.limit_bytes);
  const usage = proc.cgroup_usage_bytes;
  const pred = timeline && timeline.prediction;
  const growth = leaks && leaks.growth_bytes_per_sec !== undefined ? leaks.growth_bytes_per_sec
    : pred ? pred.bytes_per_sec : null;
  const ttoom = pred ? pred.time_to_oom_sec : leaks ? leaks.time_to_oom_sec : null;
  let ttoomTone = 'ok';
  if (ttoom !== null && ttoom !== undefined) ttoomTone = ttoom < 600 ? 'bad' : ttoom < 3600 ? 'warn' : 'ok';
  const c = proc.counters || {};
  const drops = (c.dropped_events || 0) + (c.table_full || 0);
  el.replaceChildren(
    card('heap (sampled estimate)', formatBytes(proc.heap_bytes),
      `${formatCount(proc.heap_objects)} objects live`, '', 'heap'),
    card('RSS', formatBytes(proc.rss_bytes), proc.state === 'exited'
      ? `exited · last seen ${formatTime(proc.last_seen)}` : `started ${formatTime(proc.start_time)}`,
    proc.state === 'exited' ? 'muted' : '', 'rss'),
    card('container usage', usage !== null && usage !== undefined ? formatBytes(usage) : 'unknown',
      limit ? `${formatPercent(usage / limit)} of ${formatBytes(limit)} limit` : 'limit unknown',
      limit && usage / limit > 0.85 ? 'bad' : '', 'container'),
    card('growth', growth !== null && growth !== undefined ? formatRate(growth) : '—',
      growth === null || growth === undefined ? 'no trend yet' : growth > 0 ? 'usage trend' : 'not growing',
      growth > 0 ? 'warn' : '', 'growth'),
    card('time to OOM', ttoom !== null && ttoom !== undefined ? formatDuration(ttoom) : '—',
      pred && pred.oom_at ? `≈ ${formatTime(pred.oom_at)}` : limit ? 'not growing' : 'no limit known',
      ttoom !== null && ttoom !== undefined ? ttoomTone : '', 'ttoom'),
    card('sampling', `every ${formatBytes(proc.sample_bytes)}`,
      drops ? `${formatCount(drops)} events dropped` : `${formatCount(proc.stacks)} stacks · no drops`,
      drops ? 'warn' : '', 'sampling'),
  );
}

// ---- leak suspects ------------------------------------------------------------

/**
 * Fills the suspects <tbody>. onPick(suspect) when a row is chosen (click,
 * Enter or Space). selectedId: stack_id of the focused row.
 */
export function renderSuspects(tbody, leaks, selectedId, onPick) {
  const suspects = (leaks && leaks.suspects) || [];
  if (!suspects.length) {
    tbody.replaceChildren(h('tr', { className: 'empty' },
      h('td', { colSpan: 6 }, leaks ? 'No leak suspects: no stack keeps growing.' : 'Leak analysis unavailable.')));
    return;
  }
  tbody.replaceChildren(...suspects.map((s) => {
    const loc = shortLocation(s.file, s.line);
    const row = h('tr', {
      tabIndex: 0, className: s.stack_id === selectedId ? 'selected' : '',
      dataset: { stackId: s.stack_id || '', function: s.function || '' },
      title: `Focus the flame graph on this stack${s.file ? `\n${s.file}:${s.line}` : ''}`,
      'aria-selected': s.stack_id === selectedId ? 'true' : 'false',
      onclick: () => onPick(s),
      onkeydown: (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          onPick(s);
        }
      },
    },
    h('td', { className: 'num rank' }, String(s.rank ?? '')),
    h('td', { className: 'fn' }, h('span', { className: 'fn-name', title: s.function || '' }, s.function || '?'),
      loc ? h('span', { className: 'fn-loc' }, loc) : null),
    h('td', { className: 'num' }, formatRate(s.growth_bytes_per_sec)),
    h('td', { className: 'num' }, shareBar(s.share_of_growth)),
    h('td', { className: 'num' }, formatBytes(s.live_bytes)),
    h('td', { className: 'num', title: `median age ${formatDuration(s.median_age_sec)}` },
      formatDuration(s.oldest_age_sec)));
    return row;
  }));
}

function shareBar(share) {
  const pct = Math.max(0, Math.min(1, share || 0)) * 100;
  return h('span', { className: 'share' },
    h('span', { className: 'share-track' }, h('span', { className: 'share-bar', style: `width:${pct.toFixed(1)}%` })),
    h('span', { className: 'share-text' }, formatPercent(share)));
}

// ---- alerts -------------------------------------------------------------------

export function renderAlerts(tbody, alerts, snapshotHref) {
  if (!alerts.length) {
    tbody.replaceChildren(h('tr', { className: 'empty' }, h('td', { colSpan: 7 }, 'No alerts have fired.')));
    return;
  }
  const sorted = alerts.slice().sort((a, b) =>
    (b.state === 'firing') - (a.state === 'firing') || (b.started_at || 0) - (a.started_at || 0));
  tbody.replaceChildren(...sorted.map((a) => h('tr', { className: a.state },
    h('td', null, h('span', { className: `badge ${a.state}` }, a.state)),
    h('td', null, h('span', { className: `sev ${a.severity || ''}` }, a.severity || '')),
    h('td', null, a.rule || ''),
    h('td', { className: 'num' }, String(a.pid ?? '')),
    h('td', { className: 'alert-summary', title: a.description || '' }, a.summary || '',
      a.description ? h('div', { className: 'desc' }, a.description) : null),
    h('td', null, formatTime(a.started_at),
      a.resolved_at ? h('div', { className: 'desc' }, `resolved ${formatTime(a.resolved_at)}`) : null),
    h('td', null, a.snapshot ? [
      h('a', { href: snapshotHref(a.snapshot), target: '_blank', rel: 'noopener' }, 'evidence'), ' · ',
      h('a', { href: `${snapshotHref(a.snapshot)}/pprof` }, 'pprof')] : '—'))));
}

/** The strip of firing alerts under the top bar; returns how many fire. */
export function renderAlertStrip(el, alerts, onOpen) {
  const firing = alerts.filter((a) => a.state === 'firing');
  el.hidden = !firing.length;
  if (!firing.length) {
    el.replaceChildren();
    return 0;
  }
  el.replaceChildren(
    h('strong', null, `${firing.length} alert${firing.length > 1 ? 's' : ''} firing: `),
    ...firing.slice(0, 3).map((a, i) => h('span', { className: 'strip-item' },
      i ? ' · ' : '', a.summary && a.summary.includes(String(a.pid)) ? a.summary
        : `${a.summary || a.rule} (pid ${a.pid})`)),
    firing.length > 3 ? ` · +${firing.length - 3} more` : '',
    h('button', { type: 'button', className: 'link', onclick: onOpen }, 'show alerts'));
  return firing.length;
}
