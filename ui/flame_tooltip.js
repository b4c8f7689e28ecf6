// The flame graph's tooltip: what a frame holds, where it is, what changed.
import { formatValue, formatBytes, formatCount, formatPercent } from './format.js';

/**
 * Fills and places `tip` (a position: fixed element) for a call-tree node from
 * /api/v1/profile. info: {unit, diff, width, ofTotal, ofZoomed (null when not
 * zoomed), zoomedHere}. Names go in as text, never as HTML.
 */
export function showFrameTooltip(tip, node, info, clientX, clientY) {
  const rows = [];
  const add = (k, v) => rows.push([k, v]);
  const unit = info.unit;
  if (info.diff) {
    const base = +node.base || 0;
    const value = +node.value || 0;
    const delta = node.delta !== undefined ? +node.delta : value - base;
    add('now', formatValue(value, unit));
    add('snapshot', formatValue(base, unit));
    const rel = base ? ` (${delta >= 0 ? '+' : ''}${formatPercent(delta / base)})` : value ? ' (new)' : '';
    add('change', `${delta >= 0 ? '+' : ''}${formatValue(delta, unit)}${rel}`);
  } else {
    add('value', formatValue(info.width, unit));
  }
  add('of total', formatPercent(info.ofTotal));
  if (info.ofZoomed !== null && info.ofZoomed !== undefined) add('of zoomed', formatPercent(info.ofZoomed));
  if (node.bytes !== undefined) add('bytes', formatBytes(node.bytes));
  if (node.objects !== undefined) add('objects', formatCount(node.objects));
  if (node.self) add('self', formatValue(node.self, unit));
  if (node.file) add('file', node.line ? `${node.file}:${node.line}` : node.file);
  if (node.module) add('module', node.module);
  const flags = [];
  if (node.inlined) flags.push('inlined');
  if (node.unsymbolized) flags.push('unsymbolized');
  if (node.mismatch) flags.push('build-id mismatch');

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  tip.replaceChildren(el('div', 'tip-title', node.name || '?'));
  if (flags.length) tip.appendChild(el('div', 'tip-flags', flags.join(' · ')));
  const dl = document.createElement('dl');
  for (const [k, v] of rows) dl.append(el('dt', null, k), el('dd', null, v));
  tip.appendChild(dl);
  tip.appendChild(el('div', 'tip-hint', info.zoomedHere ? 'zoomed here · Backspace: up one level' : 'click to zoom'));
  tip.hidden = false;

  // Next to the pointer, flipped to stay inside the window.
  const pad = 14;
  const tw = tip.offsetWidth;
  const th = tip.offsetHeight;
  let left = clientX + pad;
  let top = clientY + pad;
  if (left + tw > window.innerWidth - 4) left = Math.max(4, clientX - tw - pad);
  if (top + th > window.innerHeight - 4) top = Math.max(4, clientY - th - pad);
  tip.style.left = `${left}px`;
  tip.style.top = `${top}px`;
}
