// Paints a laid-out call tree (flame_layout.js) as an icicle, root on top, and
// maps between CSS pixels and the layout's value units. Owns the two stacked
// canvases, the view (the value range [x0, x1) that fills the width) and the
// rects of the last frame; knows nothing of zoom, search or events: the
// flame graph (flame.js) says what to draw.
//
// A frame is three passes over the pre-order, for profiles of 50k+ nodes:
// which rects are visible, pruning in O(1) each subtree that is off-screen or
// narrower than half a pixel; fills, one path per colour (a few dozen fills,
// not thousands); labels where there is room for a few characters. The hover
// outline lives on its own canvas: moving the mouse redraws only that.

export const kRowHeight = 18;
const kMinWidthPx = 0.5;       // narrower rects are not drawn
const kLabelMinPx = 22;        // narrower rects get no text
const kFont = '12px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace';

export class FlamePainter {
  /** container: the element the canvases fill (its width is the graph's). */
  constructor(container) {
    this.container_ = container;
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
    this.layout_ = null;
    this.x0_ = 0;
    this.x1_ = 1;
    this.width_ = 0;          // CSS width of the last frame
    this.drawnCount_ = 0;
    this.drawnIdx_ = new Int32Array(0);
    this.rectLeft_ = new Float32Array(0);
    this.rectWidth_ = new Float32Array(0);
  }

  /** The main canvas (focusable; events and its aria-label are the graph's). */
  get canvas() {
    return this.canvas_;
  }

  /** A new tree: sets the height; nothing of it is drawn until the next draw(). */
  setLayout(layout) {
    const n = layout.n;
    this.layout_ = layout;
    this.drawnIdx_ = new Int32Array(n);
    this.drawnCount_ = 0;
    this.rectLeft_ = new Float32Array(n);
    this.rectWidth_ = new Float32Array(n);
    const cssHeight = `${this.cssHeight_()}px`;
    this.canvas_.style.height = cssHeight;
    this.overlay_.style.height = cssHeight;
  }

  /** The value range [x0, x1) shown across the width; drawn at the next draw(). */
  setView(x0, x1) {
    this.x0_ = x0;
    this.x1_ = x1;
  }

  view() {
    return [this.x0_, this.x1_];
  }

  cssHeight_() {
    return (this.layout_.maxDepth + 1) * kRowHeight + 4;
  }

  scale_() {
    return this.width_ / (this.x1_ - this.x0_);
  }

  /**
   * Draws the tree in the view: fillOf(i) gives node i's fill; ancestors of
   * `zoom` are drawn paler, as context; nodes with focus[i] set (focus may be
   * null) are outlined. Returns the number of rects drawn, or -1 when the
   * container has no width (a hidden tab: the caller redraws on resize).
   */
  draw(zoom, fillOf, focus) {
    const cssWidth = this.container_.clientWidth;
    if (!cssWidth) return -1;
    const cssHeight = this.cssHeight_();
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
    const { n, nodes, x: xs, w: ws, depth, end } = this.layout_;
    const x0 = this.x0_;
    const scale = this.scale_();
    const zoomEnd = n ? end[zoom] : 0;
    const drawnIdx = this.drawnIdx_;
    const left = this.rectLeft_;
    const width = this.rectWidth_;
    let drawn = 0;
    for (let i = 0; i < n;) {
      const w = ws[i] * scale;
      const x = (xs[i] - x0) * scale;
      if (w < kMinWidthPx || x >= cssWidth || x + w <= 0) {
        i = end[i];
        continue;
      }
      const l = x > 0 ? x : 0;
      const r = x + w < cssWidth ? x + w : cssWidth;
      drawnIdx[drawn] = i;
      left[drawn] = l;
      width[drawn] = r - l;
      drawn++;
      i++;
    }
    // Pass 2: fill, one path per colour. Ancestors of the zoomed node are
    // context, drawn paler.
    const buckets = new Map();
    const ancestors = [];
    for (let k = 0; k < drawn; k++) {
      const i = drawnIdx[k];
      if (i < zoom && zoomEnd <= end[i]) {
        ancestors.push(k);
        continue;
      }
      const style = fillOf(i);
      let list = buckets.get(style);
      if (!list) buckets.set(style, (list = []));
      list.push(k);
    }
    const addRect = (k) => {
      const w = width[k];
      ctx.rect(left[k], depth[drawnIdx[k]] * kRowHeight, w > 3 ? w - 1 : w, kRowHeight - 1);
    };
    for (const [style, list] of buckets) {
      ctx.fillStyle = style;
      ctx.beginPath();
      for (const k of list) addRect(k);
      ctx.fill();
    }
    ctx.globalAlpha = 0.55;
    for (const k of ancestors) {
      ctx.fillStyle = fillOf(drawnIdx[k]);
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
      const i = drawnIdx[k];
      const maxChars = Math.floor(room / cw);
      const name = nodes[i].name || '?';
      const label = name.length <= maxChars ? name : name.slice(0, Math.max(1, maxChars - 1)) + '…';
      ctx.fillText(label, left[k] + 3, depth[i] * kRowHeight + kRowHeight / 2);
    }
    this.drawnCount_ = drawn;
    if (focus) {
      ctx.strokeStyle = '#111';
      ctx.lineWidth = 2;
      for (let k = 0; k < drawn; k++) {
        const i = drawnIdx[k];
        if (focus[i]) this.strokeNode_(ctx, i);
      }
    }
    return drawn;
  }

  /** Outlines node `i` on the overlay (nothing when i < 0), clearing the last outline. */
  drawHover(i) {
    const ctx = this.overlayCtx_;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlay_.width, this.overlay_.height);
    if (i < 0 || !this.width_) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1.5;
    this.strokeNode_(ctx, i);
  }

  /** Node i's left and right edges in CSS pixels, clipped to the canvas. */
  span_(i) {
    const scale = this.scale_();
    const { x, w } = this.layout_;
    return [Math.max((x[i] - this.x0_) * scale, 0), Math.min((x[i] + w[i] - this.x0_) * scale, this.width_)];
  }

  strokeNode_(ctx, i) {
    const [x, r] = this.span_(i);
    if (r - x < kMinWidthPx) return;
    ctx.strokeRect(x + 1, this.layout_.depth[i] * kRowHeight + 1, Math.max(r - x - 2, 1), kRowHeight - 3);
  }

  /** The node under canvas-relative CSS point (x, y), or -1. */
  hitTest(x, y) {
    const { n, x: xs, w, maxDepth, rows } = this.layout_;
    if (!n) return -1;
    const d = Math.floor(y / kRowHeight);
    if (d < 0 || d > maxDepth) return -1;
    const scale = this.scale_();
    const v = this.x0_ + x / scale;
    const row = rows[d];
    let lo = 0;
    let hi = row.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (xs[row[mid]] <= v) {
        found = row[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0 || v >= xs[found] + w[found]) return -1;
    if (w[found] * scale < kMinWidthPx) return -1;
    return found;
  }

  /** Whether node i would be drawn in the view (on screen and wide enough). */
  isVisible(i) {
    const scale = this.scale_();
    const x = (this.layout_.x[i] - this.x0_) * scale;
    const w = this.layout_.w[i] * scale;
    return w >= kMinWidthPx && x < this.width_ && x + w > 0;
  }

  /** Node i's rect in canvas-relative CSS pixels: {x, y, width, height}. */
  rectOf(i) {
    const [x, right] = this.span_(i);
    return { x, y: this.layout_.depth[i] * kRowHeight, width: right - x, height: kRowHeight - 1 };
  }

  /** The nodes drawn in the last frame, in pre-order. */
  drawnNodes() {
    return this.drawnIdx_.subarray(0, this.drawnCount_);
  }
}
