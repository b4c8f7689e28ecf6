// An interactive flame graph (icicle: root on top): the widget app.js uses.
// Owns the graph's state and its public API: the data, the zoom and its
// animation, search and a focused stack, the hover cursor and its tooltip,
// mouse and keyboard. Others do the rest: flame_layout.js lays the tree out,
// flame_colors.js colours it, flame_find.js finds frames in it,
// flame_draw.js paints it and maps pixels to frames, flame_tooltip.js fills
// the tooltip.
//
// Performance model, for profiles of 50k+ nodes:
//  - setData() lays the tree out once, into flat typed arrays in depth-first
//    pre-order, in *value* units (independent of pixels), and colours it once.
//  - Zoom, hover, search and resize only redraw; they never re-layout. A draw
//    prunes subtrees that are off-screen or narrower than half a pixel.
//  - All redraws go through requestAnimationFrame, so bursts coalesce to one
//    frame; zoom transitions are animated over a few frames.
import { formatValue } from './format.js';
import { showFrameTooltip } from './flame_tooltip.js';
import { layoutTree } from './flame_layout.js';
import { colorCodes, frameFill } from './flame_colors.js';
import {
  makeMatcher, searchFrames, pathTo, resolvePath, traceStack, arrowTarget,
} from './flame_find.js';
import { FlamePainter, kRowHeight } from './flame_draw.js';

const kAnimationMs = 180;

export class FlameGraph {
  /**
   * container: an element the graph fills (its width is tracked).
   * tooltip: an element to show on hover (position: fixed).
   * callbacks.onZoom(pathNames) when the user zooms. The onDraw(ms) property,
   * when set, is called after each draw.
   */
  constructor(container, tooltip, callbacks = {}) {
    this.tooltip_ = tooltip;
    this.onZoom_ = callbacks.onZoom || (() => {});
    this.painter_ = new FlamePainter(container);
    this.n_ = 0;
    this.unit_ = 'bytes';
    this.mode_ = 'normal';
    this.zoom_ = 0;
    this.hover_ = -1;
    this.matches_ = null;
    this.focus_ = null;       // Uint8Array: nodes of a focused suspect stack
    this.anim_ = null;
    this.frameRequested_ = false;
    this.stats_ = { nodes: 0, drawn: 0, layoutMs: 0, drawMs: 0, frames: 0 };
    this.reducedMotion_ = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    this.fillOf_ = (i) => this.colorOf_(i);

    const canvas = this.painter_.canvas;
    canvas.addEventListener('mousemove', (e) => this.onMouseMove_(e));
    canvas.addEventListener('mouseleave', () => this.setHover_(-1, null));
    canvas.addEventListener('blur', () => this.setHover_(-1, null));
    canvas.addEventListener('click', (e) => this.onClick_(e));
    canvas.addEventListener('keydown', (e) => this.onKey_(e));
    new ResizeObserver(() => this.requestDraw()).observe(container);
    this.setData(null);
  }

  // ---- data ------------------------------------------------------------------

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
    this.layout_ = layout;
    this.n_ = layout.n;
    this.color_ = colorCodes(layout.nodes, this.mode_ === 'diff');
    this.painter_.setLayout(layout);
    this.lowerNames_ = null;  // for case-insensitive search, made on first use
    this.hover_ = -1;
    this.hideTooltip_();
    this.stats_.layoutMs = performance.now() - t0;
    this.stats_.nodes = layout.n;

    this.zoom_ = 0;
    this.resolveZoom_(zoomPath);
    this.anim_ = null;
    this.painter_.setView(...this.zoomView_());
    this.matches_ = null;
    if (this.matcher_) this.applySearch_();
    if (focusNames) this.focusStack(focusNames.frames, focusNames.fn, false);
    this.requestDraw();
  }

  colorOf_(i) {
    return frameFill(this.color_[i], this.mode_ === 'diff', this.matches_ ? this.matches_[i] === 1 : undefined);
  }

  // ---- zoom ----------------------------------------------------------------

  /** Names from the root's child down to the zoomed node ([] when not zoomed). */
  zoomPath() {
    if (!this.n_) return this.pendingZoom_ || [];
    return pathTo(this.layout_, this.zoom_);
  }

  /** Zooms to the deepest node reachable along `names`; returns how many resolved. */
  resolveZoom_(names) {
    const { node, resolved } = resolvePath(this.layout_, names);
    this.zoom_ = node;
    this.pendingZoom_ = this.n_ ? null : names.slice();
    return resolved;
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
    if (this.zoom_ > 0) this.zoomTo(this.layout_.parent[this.zoom_]);
  }

  /** The view [x0, x1) that shows the zoomed node across the width. */
  zoomView_() {
    if (!this.n_) return [0, 1];
    const { x, w } = this.layout_;
    return [x[this.zoom_], x[this.zoom_] + Math.max(w[this.zoom_], 1e-9)];
  }

  startView_(animate) {
    const from = this.painter_.view();
    const to = this.zoomView_();
    if (animate && !this.reducedMotion_ && this.n_) {
      this.anim_ = { from, to, start: performance.now() };
    } else {
      this.anim_ = null;
      this.painter_.setView(...to);
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
    if (!this.lowerNames_) this.lowerNames_ = this.layout_.nodes.map((node) => (node.name || '').toLowerCase());
    const { matches, result } = searchFrames(this.layout_, this.matcher_, this.lowerNames_, this.zoom_);
    this.matches_ = matches;
    this.searchResult_ = result;
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
    const traced = traceStack(this.layout_, frames, fn);
    if (!traced) return null;
    this.focus_ = traced.onPath;
    this.zoom_ = traced.node;
    this.startView_(animate);
    return this.zoomPath();
  }

  clearFocus() {
    this.focusNames_ = null;
    this.focus_ = null;
    this.requestDraw();
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
      const { from, to } = this.anim_;
      this.painter_.setView(from[0] + (to[0] - from[0]) * e, from[1] + (to[1] - from[1]) * e);
      if (t >= 1) this.anim_ = null;
      else this.requestDraw();
    }
    this.draw_();
  }

  draw_() {
    const t0 = performance.now();
    const drawn = this.painter_.draw(this.zoom_, this.fillOf_, this.focus_);
    if (drawn < 0) return;  // hidden tab: drawn when shown (ResizeObserver)
    this.painter_.drawHover(this.hover_);
    this.painter_.canvas.setAttribute('aria-label', this.describe_());
    const ms = performance.now() - t0;
    this.stats_.drawMs = ms;
    this.stats_.drawn = drawn;
    this.stats_.frames++;
    if (this.onDraw) this.onDraw(ms);
  }

  describe_() {
    const { nodes, w } = this.layout_;
    if (!this.n_ || !w[0]) return 'Flame graph: empty profile';
    const z = nodes[this.zoom_];
    const what = this.zoom_ ? `zoomed to ${z.name}` : 'whole profile';
    return `Flame graph, ${what}: ${formatValue(w[this.zoom_], this.unit_)}, ${this.n_} frames. ` +
      'Click a frame to zoom. Keys: arrows move between frames, Enter zooms, Backspace zooms out, Escape resets.';
  }

  // ---- interaction ----------------------------------------------------------

  /** The node under canvas-relative CSS point (x, y), or -1. */
  hitTest(x, y) {
    return this.painter_.hitTest(x, y);
  }

  /** The node under a mouse event, or -1. */
  nodeAt_(e) {
    const r = this.painter_.canvas.getBoundingClientRect();
    return this.hitTest(e.clientX - r.left, e.clientY - r.top);
  }

  onMouseMove_(e) {
    this.setHover_(this.nodeAt_(e), e);
  }

  setHover_(i, e) {
    if (i !== this.hover_) {
      this.hover_ = i;
      this.painter_.canvas.style.cursor = i >= 0 ? 'pointer' : 'default';
      this.painter_.drawHover(i);
    }
    if (i < 0) this.hideTooltip_();
    else this.showTooltip_(i, e.clientX, e.clientY);
  }

  onClick_(e) {
    const i = this.nodeAt_(e);
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
      case 'ArrowUp':
      case 'ArrowDown':
      case 'ArrowLeft':
      case 'ArrowRight':
        next = arrowTarget(this.layout_, cur, e.key, (j) => this.painter_.isVisible(j));
        break;
      default: return;
    }
    e.preventDefault();
    if (next >= 0) this.moveCursor_(next);
  }

  moveCursor_(i) {
    this.hover_ = i;
    this.painter_.drawHover(i);
    const r = this.painter_.canvas.getBoundingClientRect();
    const rect = this.painter_.rectOf(i);
    this.showTooltip_(i, r.left + rect.x + 8, r.top + rect.y + kRowHeight);
  }

  hideTooltip_() {
    this.tooltip_.hidden = true;
  }

  showTooltip_(i, clientX, clientY) {
    const { nodes, w } = this.layout_;
    const total = w[0];
    showFrameTooltip(this.tooltip_, nodes[i], {
      unit: this.unit_, diff: this.mode_ === 'diff', width: w[i],
      ofTotal: total ? w[i] / total : 0,
      ofZoomed: this.zoom_ > 0 && i !== this.zoom_ ? w[i] / w[this.zoom_] : null,
      zoomedHere: i === this.zoom_,
    }, clientX, clientY);
  }

  // ---- inspection (used by the page and by the browser tests) ----------------

  /** Rects drawn in the last frame whose name equals `name` (or contains it). */
  findNodes(name, { contains = false } = {}) {
    const { nodes, w, depth } = this.layout_;
    const r = this.painter_.canvas.getBoundingClientRect();
    const out = [];
    for (const i of this.painter_.drawnNodes()) {
      const nm = nodes[i].name || '';
      if (contains ? !nm.includes(name) : nm !== name) continue;
      const rect = this.painter_.rectOf(i);
      out.push({
        name: nm, depth: depth[i], value: w[i],
        share: w[0] ? w[i] / w[0] : 0,
        x: r.left + rect.x, y: r.top + rect.y, width: rect.width, height: rect.height,
        matched: !!(this.matches_ && this.matches_[i]), focused: !!(this.focus_ && this.focus_[i]),
        delta: nodes[i].delta, base: nodes[i].base, color: this.colorOf_(i),
      });
    }
    return out;
  }

  /** The zoomed node's name and value; root is "all". */
  zoomRoot() {
    if (!this.n_) return null;
    const { nodes, w, depth } = this.layout_;
    return { name: nodes[this.zoom_].name, value: w[this.zoom_], depth: depth[this.zoom_] };
  }

  isAnimating() {
    return !!this.anim_ || this.frameRequested_;
  }

  stats() {
    return { ...this.stats_, maxDepth: this.layout_.maxDepth, total: this.n_ ? this.layout_.w[0] : 0 };
  }

  isEmpty() {
    return !this.n_ || !this.layout_.w[0];
  }

  get canvas() {
    return this.painter_.canvas;
  }
}
