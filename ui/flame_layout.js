// Lays a call tree (/api/v1/profile's `root`) out for the flame graph, once
// per data change, in value units (independent of pixels). Pure: no DOM.
//
// Nodes are numbered in depth-first pre-order, children sorted by name so the
// picture stays put across refreshes (as in pprof and flamegraph.pl). A node's
// subtree is the index range [i, end[i]), so a drawing pass can skip a whole
// subtree in O(1). All passes are O(n) apart from the sorting of siblings.

const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function isSorted(children) {
  for (let k = 1; k < children.length; k++) if (byName(children[k - 1], children[k]) > 0) return false;
  return true;
}

/**
 * root: {name, value, children, ...} or null. widthOf(node) -> the node's own
 * width (e.g. its value). Returns typed arrays indexed by pre-order number:
 *   nodes[i] (the input objects), x[i] (start), w[i] (width: max(own, sum of
 *   children), so bad data cannot overflow its parent), depth[i], parent[i]
 *   (-1 for the root), end[i] (first index after i's subtree), rows[d] (the
 *   nodes at depth d, in increasing x), n and maxDepth.
 */
export function layoutTree(root, widthOf) {
  let n = 0;
  const count = root ? [root] : [];
  while (count.length) {
    const node = count.pop();
    n++;
    const ch = node.children;
    if (ch) for (let i = 0; i < ch.length; i++) count.push(ch[i]);
  }
  const nodes = new Array(n);
  const x = new Float64Array(n);
  const w = new Float64Array(n);
  const depth = new Uint16Array(n);
  const parent = new Int32Array(n);
  const end = new Int32Array(n);
  let maxDepth = 0;

  // 1. Pre-order numbering.
  const stack = root ? [root] : [];
  const parents = new Int32Array(n + 1);
  parents[0] = -1;
  let top = stack.length;
  let next = 0;
  while (top) {
    const node = stack.pop();
    const p = parents[--top];
    const i = next++;
    nodes[i] = node;
    parent[i] = p;
    const d = p < 0 ? 0 : depth[p] + 1;
    depth[i] = d;
    if (d > maxDepth) maxDepth = d;
    const ch = node.children;
    if (ch && ch.length) {
      const sorted = ch.length > 1 && !isSorted(ch) ? ch.slice().sort(byName) : ch;
      for (let k = sorted.length - 1; k >= 0; k--) {
        stack.push(sorted[k]);
        parents[top++] = i;
      }
    }
  }
  // 2. Widths and subtree sizes bottom-up (children follow their parent).
  const childSum = new Float64Array(n);
  const size = new Int32Array(n).fill(1);
  for (let i = n - 1; i >= 0; i--) {
    const width = Math.max(widthOf(nodes[i]) || 0, childSum[i]);
    w[i] = width;
    end[i] = i + size[i];
    const p = parent[i];
    if (p >= 0) {
      childSum[p] += width;
      size[p] += size[i];
    }
  }
  // 3. Positions top-down: each child starts where its previous sibling ended;
  //    what is left of the parent on the right is its own (self) share.
  const cursor = new Float64Array(n);
  for (let i = 1; i < n; i++) {
    const p = parent[i];
    x[i] = x[p] + cursor[p];
    cursor[p] += w[i];
  }
  // 4. Rows, for hit testing by binary search.
  const counts = new Int32Array(maxDepth + 1);
  for (let i = 0; i < n; i++) counts[depth[i]]++;
  const rows = Array.from(counts, (c) => new Int32Array(c));
  counts.fill(0);
  for (let i = 0; i < n; i++) rows[depth[i]][counts[depth[i]]++] = i;
  return { n, nodes, x, w, depth, parent, end, rows, maxDepth };
}
