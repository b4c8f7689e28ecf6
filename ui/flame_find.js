// Finding frames in a laid-out call tree (the arrays of flame_layout.js): what
// the search box matches, the nodes a list of names leads to (a zoom path
// from the URL, a leak suspect's stack), and the frame an arrow key moves to.
// Pure: no DOM. A node is its pre-order index; node 0 is the root.

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

/**
 * Runs `matcher` (from makeMatcher) over every frame but the root.
 * lowerNames[i]: node i's name lower-cased. Returns {matches, result}:
 * matches[i] is 1 for a matching frame; result is {count, value, share,
 * zoomShare}, the matched value counted once per stack (a match's matching
 * descendants are not added again), as a share of the whole tree and of the
 * subtree of `zoom`.
 */
export function searchFrames(layout, matcher, lowerNames, zoom) {
  const { n, nodes, w, end } = layout;
  const matches = new Uint8Array(n);
  let count = 0;
  for (let i = 1; i < n; i++) {
    if (matcher(nodes[i].name || '', lowerNames[i])) {
      matches[i] = 1;
      count++;
    }
  }
  const sumUnder = (top) => {
    let v = 0;
    for (let i = top; i < end[top];) {
      if (matches[i]) {
        v += w[i];
        i = end[i];
      } else i++;
    }
    return v;
  };
  const value = sumUnder(0);
  const zoomValue = sumUnder(zoom);
  return {
    matches,
    result: {
      count, value,
      share: w[0] ? value / w[0] : 0,
      zoomShare: w[zoom] ? zoomValue / w[zoom] : 0,
    },
  };
}

/** Names from the root's child down to node `i` ([] for the root). */
export function pathTo(layout, i) {
  const path = [];
  for (; i > 0; i = layout.parent[i]) path.push(layout.nodes[i].name);
  return path.reverse();
}

/** The child of `i` named `name`, the widest if several; -1 if none. */
function childNamed(layout, i, name) {
  const { nodes, w, end } = layout;
  let best = -1;
  for (let j = i + 1; j < end[i]; j = end[j]) {
    if (nodes[j].name === name && (best < 0 || w[j] > w[best])) best = j;
  }
  return best;
}

/** The widest node named `name` at most `maxDepth` levels below `i`; -1 if none. */
function descendantNamed(layout, i, name, maxDepth) {
  const { nodes, w, end, depth } = layout;
  const limit = depth[i] + maxDepth;
  let best = -1;
  for (let j = i + 1; j < end[i]; j++) {
    if (depth[j] > limit) continue;
    if (nodes[j].name === name && (best < 0 || w[j] > w[best])) best = j;
  }
  return best;
}

/**
 * Follows `names` down from the root, child by child, as far as they resolve.
 * Returns {node: the deepest node reached (0 when none), resolved: how many
 * names were followed}.
 */
export function resolvePath(layout, names) {
  let node = 0;
  let resolved = 0;
  if (layout.n) {
    for (; resolved < names.length; resolved++) {
      const j = childNamed(layout, node, names[resolved]);
      if (j < 0) break;
      node = j;
    }
  }
  return { node, resolved };
}

/**
 * Traces a stack, frames outermost first, down from the root. A frame that is
 * not a child of the last one found is looked for up to 4 levels further down
 * (the tree may fold frames differently); a frame not found is skipped.
 * Returns {onPath, node}, or null when no frame resolved: onPath[j] is 1 for
 * the nodes on the traced path; node is the last frame named `fn` on it, or
 * else the deepest node reached.
 */
export function traceStack(layout, frames, fn) {
  const { n, parent } = layout;
  if (!n) return null;
  const onPath = new Uint8Array(n);
  let cur = 0;
  let target = -1;
  for (const name of frames) {
    let j = childNamed(layout, cur, name);
    if (j < 0) j = descendantNamed(layout, cur, name, 4);
    if (j < 0) continue;
    for (let a = j; a > cur; a = parent[a]) onPath[a] = 1;
    cur = j;
    if (name === fn) target = j;
  }
  if (cur === 0) return null;
  return { onPath, node: target > 0 ? target : cur };
}

/**
 * The frame an arrow key ("ArrowUp" and so on) moves a cursor on node `i` to,
 * or -1: up, the caller; down, the widest callee; left and right, the nearest
 * frame in the same row for which `visible(j)` holds.
 */
export function arrowTarget(layout, i, key, visible) {
  const { n, w, end, parent, depth, rows } = layout;
  if (!n) return -1;
  switch (key) {
    case 'ArrowUp': return i > 0 ? parent[i] : -1;
    case 'ArrowDown': {
      let next = -1;
      for (let j = i + 1; j < end[i]; j = end[j]) {
        if (next < 0 || w[j] > w[next]) next = j;
      }
      return next;
    }
    case 'ArrowLeft':
    case 'ArrowRight': {
      const dir = key === 'ArrowLeft' ? -1 : 1;
      const row = rows[depth[i]];
      for (let k = row.indexOf(i) + dir; k >= 0 && k < row.length; k += dir) {
        if (visible(row[k])) return row[k];
      }
      return -1;
    }
    default: return -1;
  }
}
