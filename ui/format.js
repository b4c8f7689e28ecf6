// Formatting of sizes, counts, rates, durations and times for display.
// Pure functions; no DOM.

const kUnits = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB"; null/undefined -> "—". */
export function formatBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const sign = n < 0 ? '-' : '';
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < kUnits.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${sign}${v.toFixed(digits)} ${kUnits[i]}`;
}

/** 12345 -> "12.3k". Counts may be fractional estimates; shown rounded. */
export function formatCount(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const sign = n < 0 ? '-' : '';
  const v = Math.abs(n);
  if (v < 1000) return sign + Math.round(v).toString();
  const units = [['k', 1e3], ['M', 1e6], ['G', 1e9], ['T', 1e12]];
  let u = units[0];
  for (const cand of units) if (v >= cand[1]) u = cand;
  const x = v / u[1];
  return `${sign}${x.toFixed(x >= 100 ? 0 : 1)}${u[0]}`;
}

/** Formats a quantity of the profile's unit ("bytes" or "objects"). */
export function formatValue(n, unit) {
  return unit === 'bytes' ? formatBytes(n) : `${formatCount(n)} obj`;
}

export function formatRate(bytesPerSec) {
  if (bytesPerSec === null || bytesPerSec === undefined) return '—';
  return `${formatBytes(bytesPerSec)}/s`;
}

/** 0.1234 -> "12.3%"; small shares keep two significant digits. */
export function formatPercent(share) {
  if (share === null || share === undefined || !Number.isFinite(share)) return '—';
  const p = share * 100;
  if (p !== 0 && Math.abs(p) < 0.1) return `${p.toPrecision(2)}%`;
  return `${p.toFixed(Math.abs(p) >= 10 ? 1 : 2)}%`;
}

/** 3725 -> "1h 2m"; 95 -> "1m 35s"; 4.2 -> "4.2s". */
export function formatDuration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return '—';
  const s = Math.max(0, sec);
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** Unix seconds -> local "HH:MM:SS" (and the date when not today). */
export function formatTime(unixSec) {
  if (unixSec === null || unixSec === undefined) return '—';
  const d = new Date(unixSec * 1000);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour12: false });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString()} ${time}`;
}

/** "/usr/src/app/demo.cc", 77 -> "demo.cc:77"; the full path goes in titles. */
export function shortLocation(file, line) {
  if (!file) return '';
  const base = file.split('/').pop();
  return line ? `${base}:${line}` : base;
}

export function basename(path) {
  return path ? path.split('/').pop() : '';
}
