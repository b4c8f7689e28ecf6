// Unit tests of the UI's pure modules (no browser): the flame graph layout,
// the search matcher and the formatters. Run: node --test tests/ui/
import test from 'node:test';
import assert from 'node:assert/strict';
import { layoutTree } from '../../ui/flame_layout.js';
import { makeMatcher } from '../../ui/flame.js';
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
