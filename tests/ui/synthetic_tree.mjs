// A synthetic call tree in /api/v1/profile's shape, for the 50k-node test.
// Self-contained (no imports, no closures) so it can be shipped into the page
// as source text. Deterministic for a given seed.
export function synthesizeTree(nodeCount, maxDepth, seed) {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const root = { name: 'all', value: 0, bytes: 0, objects: 0, self: 0, children: [] };
  const nodes = [root];
  const depth = [0];
  let made = 1;
  // Grow by attaching each new frame to a random existing one, biased to
  // recent (deeper) frames, so the tree is both wide and deep.
  while (made < nodeCount) {
    let p = nodes.length - 1 - Math.floor(Math.pow(rand(), 3) * nodes.length);
    if (depth[p] >= maxDepth) p = Math.floor(rand() * Math.min(nodes.length, 50));
    const id = made++;
    const child = {
      name: `fn_${id % 7919}::Method${id % 13}`, file: `/src/module${id % 97}.cc`, line: 1 + (id % 900),
      module: `/usr/lib/libsynth${id % 5}.so`, inlined: id % 11 === 0, value: 0, bytes: 0, objects: 0,
      self: Math.floor(rand() * rand() * 65536) + 16, children: [],
    };
    nodes[p].children.push(child);
    nodes.push(child);
    depth.push(depth[p] + 1);
  }
  // Values bottom-up: a node holds its own bytes plus its children's.
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    let v = n.self;
    for (const c of n.children) v += c.value;
    n.value = v;
    n.bytes = v;
    n.objects = Math.max(1, Math.round(v / 64));
  }
  return root;
}
