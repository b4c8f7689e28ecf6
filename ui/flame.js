// An interactive flame graph (icicle: root on top) drawn on a <canvas>.
//
// Performance model, for profiles of 50k+ nodes:
//  - setData() lays the tree out once (flame_layout.js), into flat typed arrays
//    in depth-first pre-order, in *value* units (independent of pixels). Each
//    node knows where its subtree ends (end_[i]), so a subtree is skipped in O(1).
//  - draw() maps the current view [viewX0_, viewX1_) to pixels and walks the
//    pre-order, pruning subtrees that are off-screen or narrower than half a
//    pixel. Zoom, hover, search and resize only redraw; they never re-layout.
//  - All redraws go through requestAnimationFrame, so bursts coalesce to one
//    frame; zoom transitions are animated over a few frames.
import { formatValue } from './format.js';
import { showFrameTooltip } from './flame_tooltip.js';
import { layoutTree } from './flame_layout.js';

const kRowHeight = 18;
const kMinWidthPx = 0.5;       // narrower rects are not drawn
const kLabelMinPx = 22;        // narrower rects get no text
const kFont = '12px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace';
const kAnimationMs = 180;

// Warm palette for ordinary frames, cool for inlined ones; picked by name hash
// so a function keeps its colour across refreshes and zooms.
const kWarm = [];
const kCool = [];
for (let i = 0; i < 24; i++) {
  const t = i / 23;
  kWarm.push(`hsl(${Math.round(8 + 42 * t)}, ${Math.round(78 - 10 * t)}%, ${Math.round(60 + 6 * (i % 3))}%)`);
  kCool.push(`hsl(${Math.round(165 + 30 * t)}, 45%, ${Math.round(62 + 5 * (i % 3))}%)`);
}
const kGray = 'hsl(0, 0%, 74%)';
const kFaded = 'hsl(30, 8%, 88%)';
const kMatch = 'hsl(290, 70%, 58%)';
// Diff palette: index 0 neutral, 1..16 red (grew) and 17..32 blue (shrank).
const kDiffSteps = 16;
const kDiff = ['hsl(0, 0%, 86%)'];
for (let i = 1; i <= kDiffSteps; i++) kDiff.push(`hsl(4, ${40 + 45 * i / kDiffSteps}%, ${86 - 32 * i / kDiffSteps}%)`);
for (let i = 1; i <= kDiffSteps; i++) kDiff.push(`hsl(215, ${40 + 45 * i / kDiffSteps}%, ${86 - 30 * i / kDiffSteps}%)`);

// Palette slot per function name (FNV-1a), cached: names repeat across
// frames and refreshes.
const kSlotCache = new Map();
function paletteSlot(s) {
  let slot = kSlotCache.get(s);
  if (slot === undefined) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
    slot = (h >>> 0) % kWarm.length;
    if (kSlotCache.size > 200000) kSlotCache.clear();
    kSlotCache.set(s, slot);
  }
  return slot;
}

/** Builds a matcher from the search box text: /re/flags or a case-insensitive substring. */
export function makeMatcher(query) {
  const q = (query || '').trim();
  if (!q) return null;
  const re = /^\/(.+)\/([a-z]*)$/.exec(q);
  if (re) {
    try {
      const rx = new RegExp(re[1], re[2].replace('g', ''));
      return (s) => rx.test(s);
    } catch {
      // fall through to a plain substring search
    }
  }
  const needle = q.toLowerCase();
  // Second argument: the name already lower-cased (cached by the graph).
  return (s, lower) => (lower ?? s.toLowerCase()).includes(needle);
}

export class FlameGraph {
  /**
   * container: an element the graph fills (its width is tracked).
   * tooltip: an element to show on hover (position: fixed).
   * callbacks.onZoom(pathNames) when the user zooms; onChange() after each draw.
   */
  constructor(container, tooltip, callbacks = {}) {
    this.container_ = container;
    this.tooltip_ = tooltip;
    this.onZoom_ = callbacks.onZoom || (() => {});
    this.canvas_ = document.createElement('canvas');
    this.canvas_.className = 'flame-canvas';
    this.canvas_.tabIndex = 0;
    this.canvas_.setAttribute('role', 'img');
    this.overlay_ = document.createElement('canvas');
    this.overlay_.className = 'flame-overlay';
    this.overlay_.setAttribute('aria-hidden', 'true');
    this.container_.append(this.canvas_, this.overlay_);
    this.ctx_ = this.canvas_.getContext('2d', { alpha: false });
    this.overlayCtx_ = this.overlay_.getContext('2d');
    this.charWidth_ = 0;
    this.n_ = 0;
    this.unit_ = 'bytes';
    this.mode_ = 'normal';
    this.zoom_ = 0;
    this.hover_ = -1;
    this.matches_ = null;
    this.focus_ = null;       // Uint8Array: nodes of a focused suspect stack
    this.viewX0_ = 0;
    this.viewX1_ = 1;
    this.anim_ = null;
    this.frameRequested_ = false;
    this.width_ = 0;
    this.stats_ = { nodes: 0, drawn: 0, layoutMs: 0, drawMs: 0, frames: 0 };
    this.drawnCount_ = 0;
    this.drawnIdx_ = new Int32Array(0);
    this.rectLeft_ = new Float32Array(0);
    this.rectWidth_ = new Float32Array(0);
    this.reducedMotion_ = window.matchMedia('(prefers-reduced-motion: reduce)').matches;

    this.canvas_.addEventListener('mousemove', (e) => this.onMouseMove_(e));
    this.canvas_.addEventListener('mouseleave', () => this.setHover_(-1, null));
    this.canvas_.addEventListener('blur', () => this.setHover_(-1, null));
    this.canvas_.addEventListener('click', (e) => this.onClick_(e));
    this.canvas_.addEventListener('keydown', (e) => this.onKey_(e));
    new ResizeObserver(() => this.requestDraw()).observe(this.container_);
    this.setData(null);
  }

  // ---- data and layout -------------------------------------------------------

  /**
   * Replaces the tree and lays it out. root: {name, value, children, ...} as in
   * /api/v1/profile. opts.unit "bytes"|"objects"; opts.mode "normal"|"diff";
   * opts.diffWidth "now"|"both" (diff: width by current value, or current+base).
   * Keeps the zoom path, search and focus (re-resolved by name).
   */
  setData(root, opts = {}) {
    const t0 = performance.now();
    const zoomPath = this.n_ ? this.zoomPath() : (this.pendingZoom_ || []);
    const focusNames = this.focusNames_;
    this.unit_ = opts.unit || 'bytes';
    this.mode_ = opts.mode || 'normal';
    const diffBoth = this.mode_ === 'diff' && opts.diffWidth === 'both';
    const widthOf = diffBoth ? (n) => (+n.value || 0) + (+n.base || 0) : (n) => +n.value || 0;

    const layout = layoutTree(root, widthOf);
    const n = layout.n;
    this.n_ = n;
    this.nodes_ = layout.nodes;
    this.x_ = layout.x;
    this.w_ = layout.w;
    this.depth_ = layout.depth;
    this.parent_ = layout.parent;
    this.end_ = layout.end;
    this.rows_ = layout.rows;
    this.maxDepth_ = layout.maxDepth;
    this.color_ = new Uint8Array(n);
    this.computeColors_();
    this.drawnIdx_ = new Int32Array(n);
    this.drawnCount_ = 0;  // nothing of this tree is drawn until the next frame
    this.lowerNames_ = null;  // for case-insensitive search, made on first use
    this.rectLeft_ = new Float32Array(n);
    this.rectWidth_ = new Float32Array(n);
    this.hover_ = -1;
    this.hideTooltip_();
    this.stats_.layoutMs = performance.now() - t0;
    this.stats_.nodes = n;

    const cssHeight = (this.maxDepth_ + 1) * kRowHeight + 4;
    this.canvas_.style.height = `${cssHeight}px`;
    this.overlay_.style.height = `${cssHeight}px`;
    this.zoom_ = 0;
    this.resolveZoom_(zoomPath);
    this.anim_ = null;
    this.setViewToZoom_();
    this.matches_ = null;
    if (this.matcher_) this.applySearch_();
    if (focusNames) this.focusStack(focusNames.frames, focusNames.fn, false);
    this.requestDraw();
  }

  computeColors_() {
    const n = this.n_;
    if (this.mode_ === 'diff') {
      let maxAbs = 0;
      for (let i = 1; i < n; i++) maxAbs = Math.max(maxAbs, Math.abs(+this.nodes_[i].delta || 0));
      for (let i = 0; i < n; i++) {
        const d = +this.nodes_[i].delta || 0;
        if (!maxAbs || !d) {
          this.color_[i] = 0;
          continue;
        }
        const step = Math.max(1, Math.min(kDiffSteps, Math.round(Math.sqrt(Math.abs(d) / maxAbs) * kDiffSteps)));
        this.color_[i] = d > 0 ? step : kDiffSteps + step;
      }
      return;
    }
    for (let i = 0; i < n; i++) {
      const node = this.nodes_[i];
      if (node.unsymbolized || node.mismatch || i === 0) this.color_[i] = 255;
      else this.color_[i] = paletteSlot(node.name || '') + (node.inlined ? 100 : 0);
    }
  }

  colorOf_(i) {
    if (this.matches_ && !this.matches_[i]) return kFaded;
    if (this.matches_) return kMatch;
    const c = this.color_[i];
    if (this.mode_ === 'diff') return kDiff[c];
    if (c === 255) return kGray;
    return c >= 100 ? kCool[c - 100] : kWarm[c];
  }

  // ---- zoom ----------------------------------------------------------------

  /** Names from the root's child down to the zoomed node ([] when not zoomed). */
  zoomPath() {
    if (!this.n_) return this.pendingZoom_ || [];
    const path = [];
    for (let i = this.zoom_; i > 0; i = this.parent_[i]) path.push(this.nodes_[i].name);
    return path.reverse();
  }

  /** The child of `i` named `name`, the widest if several; -1 if none. */
  childNamed_(i, name) {
    let best = -1;
    for (let j = i + 1; j < this.end_[i]; j = this.end_[j]) {
      if (this.nodes_[j].name === name && (best < 0 || this.w_[j] > this.w_[best])) best = j;
    }
    return best;
  }

  /** Zooms to the deepest node reachable along `names`; returns how many resolved. */
  resolveZoom_(names) {
    let cur = 0;
    let k = 0;
    if (this.n_) {
      for (; k < names.length; k++) {
        const j = this.childNamed_(cur, names[k]);
        if (j < 0) break;
        cur = j;
      }
    }
    this.zoom_ = cur;
    this.pendingZoom_ = this.n_ ? null : names.slice();
    return k;
  }

  /** Zooms to a path of names (e.g. restored from the URL); returns resolved count. */
  setZoomPath(names, animate = false) {
    const k = this.resolveZoom_(names || []);
    this.startView_(animate);
    return k;
  }

  zoomTo(i, animate = true) {
    if (i < 0 || i >= this.n_) return;
    this.zoom_ = i;
    // The frame under the pointer moves: the next mousemove tells what is there.
    this.hover_ = -1;
    this.hideTooltip_();
    this.startView_(animate);
    this.onZoom_(this.zoomPath());
  }

  resetZoom() {
    this.zoomTo(0);
  }

  zoomOut() {
    if (this.zoom_ > 0) this.zoomTo(this.parent_[this.zoom_]);
  }

  setViewToZoom_() {
    if (!this.n_) {
      this.viewX0_ = 0;
      this.viewX1_ = 1;
      return;
    }
    this.viewX0_ = this.x_[this.zoom_];
    this.viewX1_ = this.x_[this.zoom_] + Math.max(this.w_[this.zoom_], 1e-9);
  }

  startView_(animate) {
    const from = [this.viewX0_, this.viewX1_];
    this.setViewToZoom_();
    if (animate && !this.reducedMotion_ && this.n_) {
      this.anim_ = { from, to: [this.viewX0_, this.viewX1_], start: performance.now() };
      [this.viewX0_, this.viewX1_] = from;
    } else {
      this.anim_ = null;
    }
    this.requestDraw();
  }

  // ---- search and focus --------------------------------------------------------

  /**
   * Highlights frames whose name matches `query` (substring, or /regex/).
   * Returns {count, value, share, zoomShare}: matched value counted once per
   * stack (a match's matching descendants are not added again).
   */
  setSearch(query) {
    this.matcher_ = makeMatcher(query);
    this.applySearch_();
    this.requestDraw();
    return this.searchResult();
  }

  applySearch_() {
    if (!this.matcher_ || !this.n_) {
      this.matches_ = null;
      this.searchResult_ = null;
      return;
    }
    const m = new Uint8Array(this.n_);
    let count = 0;
    if (!this.lowerNames_) this.lowerNames_ = this.nodes_.map((node) => (node.name || '').toLowerCase());
    for (let i = 1; i < this.n_; i++) {
      if (this.matcher_(this.nodes_[i].name || '', this.lowerNames_[i])) {
        m[i] = 1;
        count++;
      }
    }
    const sumUnder = (top) => {
      let v = 0;
      for (let i = top; i < this.end_[top];) {
        if (m[i]) {
          v += this.w_[i];
          i = this.end_[i];
        } else i++;
      }
      return v;
    };
    const value = sumUnder(0);
    const zoomValue = sumUnder(this.zoom_);
    this.matches_ = m;
    this.searchResult_ = {
      count, value,
      share: this.w_[0] ? value / this.w_[0] : 0,
      zoomShare: this.w_[this.zoom_] ? zoomValue / this.w_[this.zoom_] : 0,
    };
  }

  searchResult() {
    if (this.matcher_ && this.n_) this.applySearch_();
    return this.searchResult_ || null;
  }

  /**
   * Focuses a stack: frames are names outermost first. Frames missing from the
   * tree (e.g. folded differently) are skipped. Zooms to the node of `fn` on
   * that path (or the deepest resolved) and outlines the path. Returns the
   * zoom path, or null when nothing resolved. Does not call onZoom (the
   * caller asked for it).
   */
  focusStack(frames, fn, animate = true) {
    this.focusNames_ = frames ? { frames, fn } : null;
    this.focus_ = null;
    if (!frames || !this.n_) return null;
    const onPath = new Uint8Array(this.n_);
    let cur = 0;
    let target = -1;
    for (const name of frames) {
      let j = this.childNamed_(cur, name);
      if (j < 0) j = this.descendantNamed_(cur, name, 4);
      if (j < 0) continue;
      for (let a = j; a > cur; a = this.parent_[a]) onPath[a] = 1;
      cur = j;
      if (name === fn) target = j;
    }
    if (cur === 0) return null;
    this.focus_ = onPath;
    this.zoom_ = target > 0 ? target : cur;
    this.startView_(animate);
    return this.zoomPath();
  }

  clearFocus() {
    this.focusNames_ = null;
    this.focus_ = null;
    this.requestDraw();
  }

  descendantNamed_(i, name, maxDepth) {
    const limit = this.depth_[i] + maxDepth;
    let best = -1;
    for (let j = i + 1; j < this.end_[i]; j++) {
      if (this.depth_[j] > limit) continue;
      if (this.nodes_[j].name === name && (best < 0 || this.w_[j] > this.w_[best])) best = j;
    }
    return best;
  }

  // ---- drawing ---------------------------------------------------------------

  requestDraw() {
    if (this.frameRequested_) return;
    this.frameRequested_ = true;
    requestAnimationFrame((now) => {
      this.frameRequested_ = false;
      this.frame_(now);
    });
  }

  frame_(now) {
    if (this.anim_) {
      const t = Math.min(1, (performance.now() - this.anim_.start) / kAnimationMs);
      const e = 1 - (1 - t) * (1 - t) * (1 - t);
      this.viewX0_ = this.anim_.from[0] + (this.anim_.to[0] - this.anim_.from[0]) * e;
      this.viewX1_ = this.anim_.from[1] + (this.anim_.to[1] - this.anim_.from[1]) * e;
      if (t >= 1) this.anim_ = null;
      else this.requestDraw();
    }
    this.draw_();
  }

  draw_() {
    const t0 = performance.now();
    const cssWidth = this.container_.clientWidth;
    if (!cssWidth) return;  // hidden tab: drawn when shown (ResizeObserver)
    const cssHeight = (this.maxDepth_ + 1) * kRowHeight + 4;
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.canvas_, this.overlay_]) {
      if (c.width !== Math.round(cssWidth * dpr) || c.height !== Math.round(cssHeight * dpr)) {
        c.width = Math.round(cssWidth * dpr);
        c.height = Math.round(cssHeight * dpr);
      }
    }
    this.width_ = cssWidth;
    const ctx = this.ctx_;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, cssWidth, cssHeight);
    ctx.font = kFont;
    ctx.textBaseline = 'middle';
    if (!this.charWidth_) this.charWidth_ = ctx.measureText('mmmmmmmmmm').width / 10;

    // Pass 1: which rects are visible, and where (pruning whole subtrees).
    const n = this.n_;
    const x0 = this.viewX0_;
    const scale = cssWidth / (this.viewX1_ - this.viewX0_);
    const zoom = this.zoom_;
    const zoomEnd = n ? this.end_[zoom] : 0;
    const left = this.rectLeft_;
    const width = this.rectWidth_;
    let drawn = 0;
    for (let i = 0; i < n;) {
      const w = this.w_[i] * scale;
      const x = (this.x_[i] - x0) * scale;
      if (w < kMinWidthPx || x >= cssWidth || x + w <= 0) {
        i = this.end_[i];
        continue;
      }
      const l = x > 0 ? x : 0;
      const r = x + w < cssWidth ? x + w : cssWidth;
      this.drawnIdx_[drawn] = i;
      left[drawn] = l;
      width[drawn] = r - l;
      drawn++;
      i++;
    }
    // Pass 2: fill, one path per colour (a few dozen fills, not thousands).
    // Ancestors of the zoomed node are context, drawn paler.
    const buckets = new Map();
    const ancestors = [];
    for (let k = 0; k < drawn; k++) {
      const i = this.drawnIdx_[k];
      if (i < zoom && zoomEnd <= this.end_[i]) {
        ancestors.push(k);
        continue;
      }
      const style = this.colorOf_(i);
      let list = buckets.get(style);
      if (!list) buckets.set(style, (list = []));
      list.push(k);
    }
    const addRect = (k) => {
      const w = width[k];
      ctx.rect(left[k], this.depth_[this.drawnIdx_[k]] * kRowHeight, w > 3 ? w - 1 : w, kRowHeight - 1);
    };
    for (const [style, list] of buckets) {
      ctx.fillStyle = style;
      ctx.beginPath();
      for (const k of list) addRect(k);
      ctx.fill();
    }
    ctx.globalAlpha = 0.55;
    for (const k of ancestors) {
      ctx.fillStyle = this.colorOf_(this.drawnIdx_[k]);
      ctx.beginPath();
      addRect(k);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    // Pass 3: labels, where there is room for a few characters.
    ctx.fillStyle = '#1d1d1f';
    const cw = this.charWidth_;
    for (let k = 0; k < drawn; k++) {
      const room = width[k] - 6;
      if (room < kLabelMinPx) continue;
      const i = this.drawnIdx_[k];
      const maxChars = Math.floor(room / cw);
      const name = this.nodes_[i].name || '?';
      const label = name.length <= maxChars ? name : name.slice(0, Math.max(1, maxChars - 1)) + '…';
      ctx.fillText(label, left[k] + 3, this.depth_[i] * kRowHeight + kRowHeight / 2);
    }
    this.drawnCount_ = drawn;
    if (this.focus_) {
      ctx.strokeStyle = '#111';
      ctx.lineWidth = 2;
      for (let k = 0; k < drawn; k++) {
        const i = this.drawnIdx_[k];
        if (this.focus_[i]) this.strokeNode_(ctx, i, x0, scale, cssWidth);
      }
    }
    this.drawOverlay_();
    this.canvas_.setAttribute('aria-label', this.describe_());
    const ms = performance.now() - t0;
    this.stats_.drawMs = ms;
    this.stats_.drawn = drawn;
    this.stats_.frames++;
    if (this.onDraw) this.onDraw(ms);
  }

  /** The hover outline lives on its own canvas: moving the mouse redraws only that. */
  drawOverlay_() {
    const ctx = this.overlayCtx_;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlay_.width, this.overlay_.height);
    if (this.hover_ < 0 || !this.width_) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1.5;
    const scale = this.width_ / (this.viewX1_ - this.viewX0_);
    this.strokeNode_(ctx, this.hover_, this.viewX0_, scale, this.width_);
  }

  strokeNode_(ctx, i, x0, scale, cssWidth) {
    const x = Math.max((this.x_[i] - x0) * scale, 0);
    const r = Math.min((this.x_[i] + this.w_[i] - x0) * scale, cssWidth);
    if (r - x < kMinWidthPx) return;
    ctx.strokeRect(x + 1, this.depth_[i] * kRowHeight + 1, Math.max(r - x - 2, 1), kRowHeight - 3);
  }

  describe_() {
    if (!this.n_ || !this.w_[0]) return 'Flame graph: empty profile';
    const z = this.nodes_[this.zoom_];
    const what = this.zoom_ ? `zoomed to ${z.name}` : 'whole profile';
    return `Flame graph, ${what}: ${formatValue(this.w_[this.zoom_], this.unit_)}, ${this.n_} frames. ` +
      'Click a frame to zoom. Keys: arrows move between frames, Enter zooms, Backspace zooms out, Escape resets.';
  }

  // ---- interaction ----------------------------------------------------------

  /** The node under canvas-relative CSS point (x, y), or -1. */
  hitTest(x, y) {
    if (!this.n_) return -1;
    const d = Math.floor(y / kRowHeight);
    if (d < 0 || d > this.maxDepth_) return -1;
    const scale = this.width_ / (this.viewX1_ - this.viewX0_);
    const v = this.viewX0_ + x / scale;
    const row = this.rows_[d];
    let lo = 0;
    let hi = row.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.x_[row[mid]] <= v) {
        found = row[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0 || v >= this.x_[found] + this.w_[found]) return -1;
    if (this.w_[found] * scale < kMinWidthPx) return -1;
    return found;
  }

  onMouseMove_(e) {
    const r = this.canvas_.getBoundingClientRect();
    const i = this.hitTest(e.clientX - r.left, e.clientY - r.top);
    this.setHover_(i, e);
  }

  setHover_(i, e) {
    if (i !== this.hover_) {
      this.hover_ = i;
      this.canvas_.style.cursor = i >= 0 ? 'pointer' : 'default';
      this.drawOverlay_();
    }
    if (i < 0) this.hideTooltip_();
    else this.showTooltip_(i, e.clientX, e.clientY);
  }

  onClick_(e) {
    const r = this.canvas_.getBoundingClientRect();
    const i = this.hitTest(e.clientX - r.left, e.clientY - r.top);
    if (i >= 0) this.zoomTo(i);
  }

  /**
   * Keyboard: arrows move a cursor between frames (up: caller, down: widest
   * callee, left/right: neighbours in the row), Enter zooms to it, Escape
   * resets the zoom, Backspace zooms out one level.
   */
  onKey_(e) {
    const cur = this.hover_ >= 0 ? this.hover_ : this.zoom_;
    let next = -1;
    switch (e.key) {
      case 'Escape': this.resetZoom(); break;
      case 'Backspace': this.zoomOut(); break;
      case 'Enter': if (this.hover_ >= 0) this.zoomTo(this.hover_); break;
      case 'ArrowUp': next = cur > 0 ? this.parent_[cur] : -1; break;
      case 'ArrowDown':
        for (let j = cur + 1; j < this.end_[cur]; j = this.end_[j]) {
          if (next < 0 || this.w_[j] > this.w_[next]) next = j;
        }
        break;
      case 'ArrowLeft':
      case 'ArrowRight': next = this.rowNeighbour_(cur, e.key === 'ArrowLeft' ? -1 : 1); break;
      default: return;
    }
    e.preventDefault();
    if (next >= 0 && this.n_) this.moveCursor_(next);
  }

  /** The nearest visible frame left (-1) or right (+1) of `i` in its row. */
  rowNeighbour_(i, dir) {
    const row = this.rows_[this.depth_[i]];
    let k = row.indexOf(i);
    const scale = this.width_ / (this.viewX1_ - this.viewX0_);
    for (k += dir; k >= 0 && k < row.length; k += dir) {
      const j = row[k];
      const x = (this.x_[j] - this.viewX0_) * scale;
      const w = this.w_[j] * scale;
      if (w >= kMinWidthPx && x < this.width_ && x + w > 0) return j;
    }
    return -1;
  }

  moveCursor_(i) {
    this.hover_ = i;
    this.drawOverlay_();
    const r = this.canvas_.getBoundingClientRect();
    const scale = this.width_ / (this.viewX1_ - this.viewX0_);
    const x = Math.max((this.x_[i] - this.viewX0_) * scale, 0);
    const y = this.depth_[i] * kRowHeight;
    this.showTooltip_(i, r.left + x + 8, r.top + y + kRowHeight);
  }

  hideTooltip_() {
    this.tooltip_.hidden = true;
  }

  showTooltip_(i, clientX, clientY) {
    const total = this.w_[0];
    showFrameTooltip(this.tooltip_, this.nodes_[i], {
      unit: this.unit_, diff: this.mode_ === 'diff', width: this.w_[i],
      ofTotal: total ? this.w_[i] / total : 0,
      ofZoomed: this.zoom_ > 0 && i !== this.zoom_ ? this.w_[i] / this.w_[this.zoom_] : null,
      zoomedHere: i === this.zoom_,
    }, clientX, clientY);
  }

  // ---- inspection (used by the page and by the browser tests) ----------------

  /** Rects drawn in the last frame whose name equals `name` (or contains it). */
  findNodes(name, { contains = false } = {}) {
    const r = this.canvas_.getBoundingClientRect();
    const scale = this.width_ / (this.viewX1_ - this.viewX0_);
    const out = [];
    for (let k = 0; k < this.drawnCount_; k++) {
      const i = this.drawnIdx_[k];
      const nm = this.nodes_[i].name || '';
      if (contains ? !nm.includes(name) : nm !== name) continue;
      const x = Math.max((this.x_[i] - this.viewX0_) * scale, 0);
      const right = Math.min((this.x_[i] + this.w_[i] - this.viewX0_) * scale, this.width_);
      out.push({
        name: nm, depth: this.depth_[i], value: this.w_[i],
        share: this.w_[0] ? this.w_[i] / this.w_[0] : 0,
        x: r.left + x, y: r.top + this.depth_[i] * kRowHeight, width: right - x, height: kRowHeight - 1,
        matched: !!(this.matches_ && this.matches_[i]), focused: !!(this.focus_ && this.focus_[i]),
        delta: this.nodes_[i].delta, base: this.nodes_[i].base, color: this.colorOf_(i),
      });
    }
    return out;
  }

  /** The zoomed node's name and value; root is "all". */
  zoomRoot() {
    if (!this.n_) return null;
    return { name: this.nodes_[this.zoom_].name, value: this.w_[this.zoom_], depth: this.depth_[this.zoom_] };
  }

  isAnimating() {
    return !!this.anim_ || this.frameRequested_;
  }

  stats() {
    return { ...this.stats_, maxDepth: this.maxDepth_, total: this.n_ ? this.w_[0] : 0 };
  }

  isEmpty() {
    return !this.n_ || !this.w_[0];
  }

  get canvas() {
    return this.canvas_;
  }
}
