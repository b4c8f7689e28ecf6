// The memory timeline: heap estimate, RSS and container usage over time, the
// container's limit, and the predicted climb to it (from /api/v1/timeline).
// Canvas, redrawn on data change, resize and hover (through requestAnimationFrame).
import { formatBytes, formatDuration, formatTime } from './format.js';
import { h } from './panels.js';

export const kSeries = [
  { key: 'heap_bytes', label: 'heap (estimate)', color: '#e8590c' },
  { key: 'rss_bytes', label: 'RSS', color: '#1c7ed6' },
  { key: 'cgroup_bytes', label: 'container usage', color: '#2f9e44' },
];
const kLimitColor = '#c92a2a';
const kPad = { left: 64, right: 12, top: 10, bottom: 22 };

/** A "nice" axis step near `raw` bytes: 1, 2 or 5 × a power of 1024-ish units. */
function niceBytesStep(raw) {
  if (!(raw > 0)) return 1;
  let unit = 1;
  while (raw / unit >= 1024) unit *= 1024;
  const x = raw / unit;
  const m = x <= 1 ? 1 : x <= 2 ? 2 : x <= 5 ? 5 : x <= 10 ? 10 : x <= 20 ? 20 : x <= 50 ? 50 :
    x <= 100 ? 100 : x <= 200 ? 200 : x <= 500 ? 500 : 1024;
  return m * unit;
}

function niceTimeStep(raw) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
  for (const s of steps) if (s >= raw) return s;
  return steps[steps.length - 1];
}

export class TimelineChart {
  /** container: element to fill; legend: element to receive the legend. */
  constructor(container, legend) {
    this.container_ = container;
    this.legend_ = legend;
    this.canvas_ = document.createElement('canvas');
    this.canvas_.setAttribute('role', 'img');
    this.canvas_.className = 'timeline-canvas';
    container.appendChild(this.canvas_);
    this.data_ = null;
    this.hidden_ = new Set();  // series keys the user switched off in the legend
    this.pending_ = false;
    this.canvas_.addEventListener('mousemove', (e) => {
      const r = this.canvas_.getBoundingClientRect();
      this.hoverX_ = e.clientX - r.left;
      this.requestDraw();
    });
    this.canvas_.addEventListener('mouseleave', () => {
      this.hoverX_ = null;
      this.requestDraw();
    });
    new ResizeObserver(() => this.requestDraw()).observe(container);
  }

  setData(timeline) {
    this.data_ = timeline;
    this.requestDraw();
  }

  /** The last /api/v1/timeline answer drawn (null when none). */
  get data() {
    return this.data_;
  }

  requestDraw() {
    if (this.pending_) return;
    this.pending_ = true;
    requestAnimationFrame(() => {
      this.pending_ = false;
      this.draw_();
    });
  }

  draw_() {
    const w = this.container_.clientWidth;
    const h = this.container_.clientHeight || 180;
    if (!w) return;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas_.width !== Math.round(w * dpr) || this.canvas_.height !== Math.round(h * dpr)) {
      this.canvas_.width = Math.round(w * dpr);
      this.canvas_.height = Math.round(h * dpr);
      this.canvas_.style.height = `${h}px`;
    }
    const ctx = this.canvas_.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    const data = this.data_;
    const points = (data && data.points) || [];
    if (!points.length) {
      ctx.fillStyle = '#666';
      ctx.textAlign = 'center';
      ctx.fillText('No timeline samples yet', w / 2, h / 2);
      this.canvas_.setAttribute('aria-label', 'Memory timeline: no samples yet');
      this.renderLegend_(null);
      return;
    }
    const limit = data.limit_bytes;
    const pred = data.prediction;
    const tFirst = points[0].t;
    const tLast = points[points.length - 1].t;
    let tMin = tFirst;
    let tMax = Math.max(tLast, tFirst + 10);
    // Show the predicted OOM on the axis when it is not far beyond the data.
    let predEnd = null;
    if (pred && pred.oom_at && limit && pred.oom_at > tLast) {
      const span = Math.max(tLast - tFirst, 60);
      predEnd = Math.min(pred.oom_at, tLast + 2 * span);
      tMax = Math.max(tMax, predEnd + span * 0.03);
    }
    let yMax = 0;
    const shown = kSeries.filter((s) => !this.hidden_.has(s.key));
    for (const p of points) for (const s of shown) if (p[s.key] > yMax) yMax = p[s.key];
    // A limit far above the data would squash the lines flat: then the limit
    // is named at the top of the plot ("off scale") instead of drawn.
    const limitOnScale = !!limit && (limit <= yMax * 4 || !yMax);
    if (limitOnScale) yMax = Math.max(yMax, limit);
    yMax = yMax * 1.08 || 1;
    const plotW = w - kPad.left - kPad.right;
    const plotH = h - kPad.top - kPad.bottom;
    const X = (t) => kPad.left + ((t - tMin) / (tMax - tMin)) * plotW;
    const Y = (v) => kPad.top + plotH - (v / yMax) * plotH;

    // Grid and axes.
    ctx.strokeStyle = '#e9ecef';
    ctx.fillStyle = '#555';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const yStep = niceBytesStep(yMax / 4);
    for (let v = 0; v <= yMax; v += yStep) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(kPad.left, y);
      ctx.lineTo(w - kPad.right, y);
      ctx.stroke();
      // The zero label sits above its line, clear of the time labels below.
      ctx.textBaseline = v === 0 ? 'bottom' : 'middle';
      ctx.fillText(formatBytes(v), kPad.left - 6, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const tStep = niceTimeStep((tMax - tMin) / Math.max(2, Math.floor(plotW / 90)));
    for (let t = Math.ceil(tMin / tStep) * tStep; t <= tMax; t += tStep) {
      const x = Math.round(X(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, kPad.top);
      ctx.lineTo(x, kPad.top + plotH);
      ctx.stroke();
      const label = new Date(t * 1000).toLocaleTimeString([], { hour12: false });
      const half = ctx.measureText(label).width / 2;
      ctx.fillText(label, Math.min(x, w - half - 1), kPad.top + plotH + 5);
    }

    // Limit line.
    if (limit && !limitOnScale) {
      ctx.fillStyle = kLimitColor;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'top';
      ctx.fillText(`limit ${formatBytes(limit)} ↑ (off scale)`, w - kPad.right, kPad.top);
    }
    if (limitOnScale) {
      ctx.strokeStyle = kLimitColor;
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(kPad.left, Y(limit));
      ctx.lineTo(w - kPad.right, Y(limit));
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = kLimitColor;
      ctx.textAlign = 'left';
      ctx.textBaseline = 'bottom';
      ctx.fillText(`limit ${formatBytes(limit)}`, kPad.left + 4, Y(limit) - 2);
    }

    // Series.
    for (const s of shown) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.8;
      ctx.beginPath();
      let started = false;
      for (const p of points) {
        const v = p[s.key];
        if (v === null || v === undefined) {
          started = false;
          continue;
        }
        if (started) ctx.lineTo(X(p.t), Y(v));
        else ctx.moveTo(X(p.t), Y(v));
        started = true;
      }
      ctx.stroke();
    }

    // Prediction: the line that reaches the limit at oom_at, from the last sample.
    let predText = null;
    if (pred && pred.oom_at && limit && predEnd !== null) {
      const startV = limit - pred.bytes_per_sec * (pred.oom_at - tLast);
      const endV = limit - pred.bytes_per_sec * (pred.oom_at - predEnd);
      ctx.save();
      ctx.beginPath();
      ctx.rect(kPad.left, kPad.top, plotW, plotH);
      ctx.clip();
      ctx.strokeStyle = kLimitColor;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([2, 3]);
      ctx.beginPath();
      ctx.moveTo(X(tLast), Y(Math.max(0, startV)));
      ctx.lineTo(X(predEnd), Y(endV));
      ctx.stroke();
      ctx.restore();
      predText = `OOM in ${formatDuration(pred.time_to_oom_sec)} (≈${formatTime(pred.oom_at)})`;
      ctx.fillStyle = kLimitColor;
      ctx.font = 'bold 11px system-ui, sans-serif';
      const reached = predEnd >= pred.oom_at;
      const tx = X(predEnd);
      const labelY = limitOnScale ? Y(limit) + 4 : kPad.top + 14;
      if (reached && limitOnScale) {
        ctx.beginPath();
        ctx.arc(tx, Y(limit), 4, 0, Math.PI * 2);
        ctx.fill();
      }
      ctx.textAlign = 'right';
      ctx.textBaseline = 'top';
      const label = reached ? predText : `${predText} →`;
      const tw = ctx.measureText(label).width;
      ctx.fillText(label, Math.max(kPad.left + tw + 4, Math.min(tx, w - kPad.right)), labelY);
      ctx.font = '11px system-ui, sans-serif';
    }

    // Hover: nearest sample.
    let hovered = null;
    if (this.hoverX_ !== null && this.hoverX_ !== undefined && this.hoverX_ >= kPad.left) {
      const t = tMin + ((this.hoverX_ - kPad.left) / plotW) * (tMax - tMin);
      let best = points[0];
      for (const p of points) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      hovered = best;
      ctx.strokeStyle = '#495057';
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(Math.round(X(best.t)) + 0.5, kPad.top);
      ctx.lineTo(Math.round(X(best.t)) + 0.5, kPad.top + plotH);
      ctx.stroke();
    }
    const last = points[points.length - 1];
    this.canvas_.setAttribute('aria-label',
      `Memory timeline: heap ${formatBytes(last.heap_bytes)}, RSS ${formatBytes(last.rss_bytes)}` +
      (last.cgroup_bytes !== null && last.cgroup_bytes !== undefined ? `, container ${formatBytes(last.cgroup_bytes)}` : '') +
      (limit ? `, limit ${formatBytes(limit)}` : ', limit unknown') + (predText ? `; ${predText}` : ''));
    this.renderLegend_(hovered || last, !!hovered, limit);
  }

  renderLegend_(point, hovered, limit) {
    const items = [];
    if (point) {
      for (const s of kSeries) {
        if (point[s.key] === null || point[s.key] === undefined) continue;
        const off = this.hidden_.has(s.key);
        items.push(h('button', {
          type: 'button', className: 'legend-item', 'aria-pressed': String(!off),
          title: off ? `show ${s.label}` : `hide ${s.label}`,
          onclick: () => {
            if (off) this.hidden_.delete(s.key);
            else this.hidden_.add(s.key);
            this.requestDraw();
          },
        }, h('i', { className: 'swatch', style: `border-color:${s.color}` }),
        h('span', null, `${s.label} ${formatBytes(point[s.key])}`)));
      }
      items.push(h('span', { className: 'legend-item' },
        h('i', { className: 'swatch dashed', style: `border-color:${kLimitColor}` }),
        h('span', null, `limit ${limit ? formatBytes(limit) : 'unknown'}`)));
      if (hovered) items.push(h('span', { className: 'legend-time' }, `at ${formatTime(point.t)}`));
    }
    this.legend_.replaceChildren(...items);
  }
}
