// A stand-in for heapwatchd's HTTP API (docs/api.md) serving ui/ and made-up
// data, for working on the page without a collector and for the browser tests
// of states a real collector rarely shows (401, collector down, no processes).
//
//   node mock_server.mjs [--port N] [--token T] [--no-processes]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const uiDir = path.resolve(here, '../../ui');
const kTypes = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };

function frame(name, file, line, children = [], self = 0, extra = {}) {
  return { name, file, line, module: '/usr/bin/heapwatch-demo', inlined: false, self, children, ...extra };
}

// Fills value/bytes/objects bottom-up from `self` (bytes); objects at 4 KiB each.
function finish(node, scale = 1) {
  let v = (node.self || 0) * scale;
  for (const c of node.children) v += finish(c, scale).value;
  node.value = v;
  node.bytes = v;
  node.objects = Math.round(v / 4096);
  node.self = (node.self || 0) * scale;
  return node;
}

export function demoTree(t) {
  const leak = 4096 * 500 * t * 0.5;
  return finish({
    name: 'all', self: 0, children: [
      frame('start_thread', '', 0, [
        frame('execute_native_thread_routine', '', 0, [
          frame('Serve', '/src/demo/demo_service.cc', 118, [
            frame('SessionStore::RememberSession', '/src/demo/demo_service.cc', 45, [
              frame('operator new[]', '', 0, [frame('malloc', '', 0, [], leak, { module: '/lib/libheapwatch.so' })]),
            ]),
            frame('ResponseCache::Put', '/src/demo/demo_service.cc', 63, [
              frame('std::unordered_map<unsigned long, std::string>::emplace', '/usr/include/c++/12/bits/unordered_map.h', 386,
                [frame('operator new', '', 0, [], 2.1e6)], 0, { inlined: true }),
            ]),
            frame('ParseRequest', '/src/demo/demo_service.cc', 97, [frame('operator new', '', 0, [], 3e5)]),
          ]),
        ]),
      ]),
      frame('main', '/src/demo/demo_service.cc', 160, [frame('libstdc++.so.6+0x9a3f0', '', 0, [], 72000, { unsymbolized: true })]),
    ],
  });
}

export function startMock({ port = 0, token = null, noProcesses = false } = {}) {
  const t0 = Date.now() / 1000 - 120;
  const snapshots = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const send = (code, body, type = 'application/json') => {
      res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    };
    if (url.pathname.startsWith('/api/') && token && req.headers.authorization !== `Bearer ${token}`) {
      return send(401, { error: 'missing or bad bearer token' });
    }
    const now = Date.now() / 1000;
    const elapsed = now - t0;
    const proc = {
      pid: 4242, ppid: 1, exe: '/usr/bin/heapwatch-demo', state: 'running', connected: true,
      start_time: t0, last_seen: now, sample_bytes: 524288,
      heap_bytes: 8e6 + 1e6 * elapsed, heap_objects: 3000 + 250 * elapsed,
      alloc_bytes: 9e9, alloc_objects: 4e6, rss_bytes: 30e6 + 1.1e6 * elapsed,
      cgroup_usage_bytes: 40e6 + 1.1e6 * elapsed, limit_bytes: 512 * 1048576, stacks: 310, live_samples: 40,
      counters: { sampled_allocs: 1, sampled_frees: 1, dropped_events: 0, table_full: 0, unwind_failures: 0,
        reconnects: 0, resyncs: 1, evicted_stacks: 0, evicted_samples: 0 },
    };
    const exited = { ...proc, pid: 4100, state: 'exited', connected: false, heap_bytes: 1e6, last_seen: t0 };
    switch (url.pathname) {
      case '/api/v1/processes':
        return send(200, { processes: noProcesses ? [] : [proc, exited] });
      case '/api/v1/profile': {
        const tree = demoTree(elapsed);
        const base = url.searchParams.get('base');
        if (base) {
          const snap = snapshots.find((s) => s.id === base);
          if (!snap) return send(404, { error: `unknown snapshot ${base}` });
          const old = demoTree(snap.elapsed);
          const mark = (a, b) => {
            a.base = b ? b.value : 0;
            a.delta = a.value - a.base;
            a.children.forEach((c, i) => mark(c, b && b.children[i]));
          };
          mark(tree, old);
        }
        return send(200, { pid: proc.pid, type: url.searchParams.get('type') || 'inuse_space', unit: 'bytes', total: tree.value, root: tree });
      }
      case '/api/v1/timeline': {
        const points = [];
        for (let s = 0; s <= elapsed; s += 5) {
          points.push({ t: t0 + s, heap_bytes: 8e6 + 1e6 * s, rss_bytes: 30e6 + 1.1e6 * s, cgroup_bytes: 40e6 + 1.1e6 * s });
        }
        const last = points[points.length - 1];
        const rate = 1.1e6;
        const ttoom = (proc.limit_bytes - last.cgroup_bytes) / rate;
        return send(200, { pid: proc.pid, limit_bytes: proc.limit_bytes, points,
          prediction: { bytes_per_sec: rate, time_to_oom_sec: ttoom, oom_at: last.t + ttoom } });
      }
      case '/api/v1/leaks':
        return send(200, { pid: proc.pid, growth_bytes_per_sec: 1.1e6, time_to_oom_sec: 400, limit_bytes: proc.limit_bytes,
          suspects: [{ rank: 1, stack_id: '9f2c01', function: 'SessionStore::RememberSession', file: '/src/demo/demo_service.cc', line: 45,
            frames: ['malloc', 'operator new[]', 'SessionStore::RememberSession', 'Serve', 'execute_native_thread_routine', 'start_thread']
              .map((name) => ({ name, file: '', line: 0, module: '/usr/bin/heapwatch-demo', inlined: false })),
            live_bytes: 1e6 * elapsed, growth_bytes_per_sec: 1.02e6, share_of_growth: 0.93, score: 0.9, r2: 0.98,
            oldest_age_sec: elapsed, median_age_sec: elapsed / 2 },
          { rank: 2, stack_id: 'aa11', function: 'ResponseCache::Put', file: '/src/demo/demo_service.cc', line: 63,
            frames: [{ name: 'ResponseCache::Put' }], live_bytes: 2.1e6, growth_bytes_per_sec: 2000, share_of_growth: 0.02,
            score: 0.1, r2: 0.3, oldest_age_sec: 30, median_age_sec: 12 }] });
      case '/api/v1/alerts':
        return send(200, { alerts: [{ id: 'time_to_oom/4242', rule: 'time_to_oom', pid: 4242, state: 'firing', severity: 'critical',
          summary: 'heapwatch-demo (pid 4242) will reach its memory limit in 7m', description: 'usage grows 1.1 MB/s; top suspect SessionStore::RememberSession',
          started_at: now - 30, resolved_at: null, snapshot: '20261124T180000Z-4242-1' },
        { id: 'usage_high/4100', rule: 'usage_high', pid: 4100, state: 'resolved', severity: 'warning', summary: 'usage above 90% of limit',
          description: '', started_at: t0 - 600, resolved_at: t0 - 300, snapshot: null }] });
      case '/api/v1/snapshots':
        if (req.method === 'POST') {
          const id = `manual-${snapshots.length + 1}`;
          snapshots.unshift({ id, pid: 4242, time: now, reason: 'manual', size_bytes: 1234, elapsed });
          return send(201, { id });
        }
        return send(200, { snapshots: snapshots.map(({ elapsed: _e, ...s }) => s) });
      default: {
        const rel = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
        const file = path.resolve(uiDir, rel);
        if (!file.startsWith(uiDir + path.sep) || !fs.existsSync(file)) return send(404, { error: 'not found' });
        return send(200, fs.readFileSync(file), kTypes[path.extname(file)] || 'application/octet-stream');
      }
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : null;
  };
  const server = await startMock({ port: +(arg('--port') || 8099), token: arg('--token'),
    noProcesses: process.argv.includes('--no-processes') });
  console.log(`mock heapwatchd on http://127.0.0.1:${server.address().port}/`);
}
