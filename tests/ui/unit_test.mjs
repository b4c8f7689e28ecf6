// Unit tests of the UI's pure modules (no browser): the flame graph's layout,
// finding (search, paths, stacks, arrow keys) and colours, and the formatters.
// Run: node --test tests/ui/
import test from 'node:test';
import assert from 'node:assert/strict';
import { layoutTree } from '../../ui/flame_layout.js';
import {
  makeMatcher, searchFrames, pathTo, resolvePath, traceStack, arrowTarget,
} from '../../ui/flame_find.js';
import { colorCodes, frameFill } from '../../ui/flame_colors.js';
import {
  formatBytes, formatCount, formatDuration, formatPercent, shortLocation,
} from '../../ui/format.js';
import { synthesizeTree } from './synthetic_tree.mjs';

const node = (name, value, children = []) => ({ name, value, children });
const byValue = (n) => n.value;

test('layout: pre-order, children by name, x from the left, self share on the right', () => {
  const root = node('all', 10, [node('b', 3, [node('c', 1)]), node('a', 5)]);
  const l = layoutTree(root, byValue);
  assert.equal(l.n, 4);
  assert.deepEqual(l.nodes.map((n) => n.name), ['all', 'a', 'b', 'c']);
  assert.deepEqual([...l.x], [0, 0, 5, 5]);
  assert.deepEqual([...l.w], [10, 5, 3, 1]);
  assert.deepEqual([...l.depth], [0, 1, 1, 2]);
  assert.deepEqual([...l.parent], [-1, 0, 0, 2]);
  assert.deepEqual([...l.end], [4, 2, 4, 4]);
  assert.equal(l.maxDepth, 2);
  assert.deepEqual(l.rows.map((r) => [...r]), [[0], [1, 2], [3]]);
  assert.deepEqual(root.children.map((n) => n.name), ['b', 'a'], 'the input is not reordered');
});

test('layout: a parent is at least as wide as its children (bad data cannot overflow)', () => {
  const l = layoutTree(node('all', 1, [node('x', 4), node('y', 6)]), byValue);
  assert.equal(l.w[0], 10);
});

test('layout: empty input', () => {
  const l = layoutTree(null, byValue);
  assert.equal(l.n, 0);
  assert.equal(l.maxDepth, 0);
});

test('layout: invariants hold on a 50k-node tree, and it is fast', () => {
  const tree = synthesizeTree(50000, 40, 7);
  layoutTree(tree, byValue);  // warm up the JIT
  const t0 = performance.now();
  const l = layoutTree(tree, byValue);
  const ms = performance.now() - t0;
  assert.equal(l.n, 50000);
  for (let i = 1; i < l.n; i++) {
    const p = l.parent[i];
    assert.ok(p < i && l.end[p] >= l.end[i], 'subtree ranges nest');
    assert.ok(l.x[i] >= l.x[p] - 1e-6 && l.x[i] + l.w[i] <= l.x[p] + l.w[p] + 1e-6, 'children inside parents');
  }
  for (const row of l.rows) {
    for (let k = 1; k < row.length; k++) assert.ok(l.x[row[k]] >= l.x[row[k - 1]] + l.w[row[k - 1]] - 1e-6, 'rows do not overlap');
  }
  console.log(`# layout of 50k nodes: ${ms.toFixed(1)} ms`);
  assert.ok(ms < 2000, `${ms} ms`);
});

test('search: substring is case-insensitive; /regex/ is a regex; a bad regex falls back', () => {
  assert.equal(makeMatcher(''), null);
  const sub = makeMatcher('remember');
  assert.ok(sub('SessionStore::RememberSession'));
  assert.ok(!sub('ResponseCache::Put'));
  const re = makeMatcher('/^Session.*Session$/');
  assert.ok(re('SessionStore::RememberSession'));
  assert.ok(!re('xSessionStore::RememberSession'));
  const bad = makeMatcher('/(/');
  assert.ok(bad('a/(/b'));
});

// all(10) -> a(5) -> [x(2), y(3) -> x(1)] ; b(4) -> x(4) ; self of all: 1.
const findTree = () => layoutTree(node('all', 10, [
  node('a', 5, [node('x', 2), node('y', 3, [node('x', 1)])]),
  node('b', 4, [node('x', 4)]),
]), byValue);
const lower = (l) => l.nodes.map((n) => n.name.toLowerCase());
const names = (l, ids) => ids.map((i) => l.nodes[i].name);

test('find: search counts every match but a stack\'s value once, of the whole and of the zoomed', () => {
  const l = findTree();  // pre-order: all a x y x b x
  const { matches, result } = searchFrames(l, makeMatcher('x'), lower(l), 0);
  assert.deepEqual([...matches], [0, 0, 1, 0, 1, 0, 1]);
  assert.deepEqual(result, { count: 3, value: 2 + 1 + 4, share: 0.7, zoomShare: 0.7 });
  const inA = searchFrames(l, makeMatcher('/^[ay]$/'), lower(l), 1).result;
  assert.equal(inA.count, 2);
  assert.equal(inA.value, 5, 'y under a is not added again');
  assert.equal(inA.zoomShare, 1);
  assert.equal(searchFrames(l, makeMatcher('all'), lower(l), 0).result.count, 0, 'the root never matches');
});

test('find: zoom paths go from names to nodes and back; unknown names stop the walk', () => {
  const l = findTree();
  const yx = resolvePath(l, ['a', 'y', 'x']);
  assert.deepEqual(yx, { node: 4, resolved: 3 });
  assert.deepEqual(pathTo(l, yx.node), ['a', 'y', 'x']);
  assert.deepEqual(pathTo(l, 0), []);
  assert.deepEqual(resolvePath(l, ['b', 'nope', 'x']), { node: 5, resolved: 1 });
  assert.deepEqual(resolvePath(l, ['x']), { node: 0, resolved: 0 }, 'x is not a child of the root');
  assert.deepEqual(resolvePath(layoutTree(null, byValue), ['a']), { node: 0, resolved: 0 });
});

test('find: a stack is traced through missing and extra frames to its function', () => {
  const l = findTree();
  // The caller's stack lacks "a": y is found below the root's child, and
  // outlined with the frame in between.
  const t = traceStack(l, ['y', 'x'], 'x');
  assert.equal(t.node, 4);
  assert.deepEqual([...t.onPath], [0, 1, 0, 1, 1, 0, 0]);
  assert.equal(traceStack(l, ['x'], 'x').node, 6, 'of several below, the widest (x under b)');
  const deep = traceStack(l, ['a', 'gone', 'y', 'x'], 'y');
  assert.equal(deep.node, 3, 'zooms to fn, not to the deepest frame');
  assert.deepEqual([...deep.onPath], [0, 1, 0, 1, 1, 0, 0]);
  assert.equal(traceStack(l, ['a', 'y'], 'nowhere').node, 3, 'fn missing: the deepest resolved');
  assert.equal(traceStack(l, ['gone'], 'gone'), null);
  assert.equal(traceStack(layoutTree(null, byValue), ['a'], 'a'), null);
});

test('find: arrow keys go to the caller, the widest callee, and visible row neighbours', () => {
  const l = findTree();  // row 2: x(2) y(3) x(4 under b) at indices 2, 3, 6
  const all = () => true;
  assert.equal(arrowTarget(l, 3, 'ArrowUp', all), 1);
  assert.equal(arrowTarget(l, 0, 'ArrowUp', all), -1);
  assert.equal(arrowTarget(l, 1, 'ArrowDown', all), 3, 'y (3) is wider than x (2)');
  assert.equal(arrowTarget(l, 2, 'ArrowDown', all), -1);
  assert.equal(arrowTarget(l, 3, 'ArrowRight', all), 6, 'across the parent boundary');
  assert.equal(arrowTarget(l, 6, 'ArrowRight', all), -1);
  assert.equal(arrowTarget(l, 6, 'ArrowLeft', (j) => j !== 3), 2, 'invisible frames are skipped');
  assert.equal(arrowTarget(l, 0, 'Home', all), -1);
  assert.equal(arrowTarget(layoutTree(null, byValue), 0, 'ArrowLeft', all), -1);
});

test('colours: by name, stable; inlined cool; root, unsymbolized and mismatched grey', () => {
  const nodes = [
    { name: 'all' }, { name: 'f' }, { name: 'f' }, { name: 'f', inlined: true },
    { name: 'g', unsymbolized: true }, { name: 'h', mismatch: true },
  ];
  const c = colorCodes(nodes, false);
  assert.equal(c[1], c[2], 'same name, same colour');
  const gray = frameFill(c[0], false);
  assert.deepEqual([c[4], c[5]].map((k) => frameFill(k, false)), [gray, gray]);
  assert.notEqual(frameFill(c[1], false), gray);
  assert.notEqual(frameFill(c[3], false), frameFill(c[1], false), 'inlined differs');
  assert.match(frameFill(c[1], false), /^hsl\((\d|[1-4]\d|50),/, 'warm hue');
  assert.match(frameFill(c[3], false), /^hsl\(1[6-9]\d,/, 'cool hue');
  assert.deepEqual([...colorCodes(nodes, false)], [...c], 'the same on a second run');
});

test('colours: diff is red for growth, blue for shrinkage, neutral for none, deeper with size', () => {
  const nodes = [{ delta: 1000 }, { delta: 100 }, { delta: 1 }, { delta: -100 }, { delta: 0 }, {}];
  const c = colorCodes(nodes, true);
  const fill = Array.from(c, (k) => frameFill(k, true));
  const hue = (s) => +/^hsl\((\d+),/.exec(s)[1];
  const light = (s) => +/(\d+(\.\d+)?)%\)$/.exec(s)[1];
  assert.equal(c[1], 16, 'the largest change below the root: the deepest red');
  assert.equal(c[2], 2, 'square-root scale: 1% of the largest is still visible');
  assert.equal(hue(fill[1]), 4);
  assert.equal(hue(fill[3]), 215);
  assert.ok(light(fill[1]) < light(fill[2]), 'bigger growth is darker');
  assert.equal(fill[4], fill[5]);
  assert.equal(fill[4], 'hsl(0, 0%, 86%)');
  assert.equal(c[0], 16, 'the root is capped, not scaled past the palette');
});

test('colours: a search overrides every colour', () => {
  const match = frameFill(0, false, true);
  const faded = frameFill(0, false, false);
  assert.notEqual(match, faded);
  assert.equal(frameFill(5, true, true), match);
  assert.equal(frameFill(255, false, false), faded);
  assert.notEqual(frameFill(0, false), match);
});

test('formatters', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(64 * 2 ** 30), '64.0 GiB');
  assert.equal(formatBytes(-2048), '-2.00 KiB');
  assert.equal(formatBytes(null), '—');
  assert.equal(formatCount(12345), '12.3k');
  assert.equal(formatPercent(0.1234), '12.3%');
  assert.equal(formatPercent(0.0004), '0.040%');
  assert.equal(formatDuration(95), '1m 35s');
  assert.equal(formatDuration(3725), '1h 2m');
  assert.equal(shortLocation('/src/demo/demo_service.cc', 45), 'demo_service.cc:45');
});
