"""Bounded memory under a flood, measured on the real heapwatchd: 50 clients
at once sending a million distinct stacks and a million allocations between
them, then clients sending garbage and clients holding half-sent frames. The
collector keeps its caps (evictions counted in /metrics), stays healthy, and
its peak RSS (VmHWM from /proc) stays under a bound derived from the caps."""
import os
import random
import subprocess
import sys
import unittest

from harness import CollectorTestCase, wait_until
from test_collector_support import (HEADER, MAX_FRAME_BYTES, T_EVENTS, FakeShim, hwm_bytes,
                                    ingest_errors, metric, rss_bytes)

CLIENTS = 50
STACKS_PER_CLIENT = 20000           # 50 x 20,000 = 1,000,000 distinct stacks
DEPTH = 8
MAX_TOTAL_STACKS = 100000
MAX_STACKS = 20000                  # per process: each client fills its own cap exactly
MAX_LIVE = 5000                     # per process
HOLDERS = 20                        # connections holding a nearly complete 1 MiB frame
GARBAGE_CLIENTS = 50

MiB = 1 << 20

# The bound, from the caps. Measured on x86-64 (RelWithDebInfo, glibc malloc,
# three runs): idle heapwatchd ~6 MiB resident; after the stack flood ~52 MiB;
# with the held frames ~74.5 MiB (peak). Per kept stack the collector holds
# its Stack record (56 B), DEPTH program counters (64 B) and an index entry
# (~32 B with the flat map's slack), and vectors double as they grow, so
# <= 2 x 152 B ~ 300 B; each live sample is a map entry of 40 B, <= 2 x 48 B
# with slack; each connection has a 64 KiB read buffer and its decoder may
# buffer one frame (<= 1 MiB); the symbolizer's caches, the growth analysis
# and the allocator's own slack make up FIXED. What is refused (900,000
# stacks, 750,000 samples) must cost nothing that grows with it. The bound
# comes to ~100 MiB, ~25% above the measured peak.
FIXED = 24 * MiB
PER_STACK = 300
PER_SAMPLE = 96
PER_CONNECTION = 64 << 10
BOUND = (FIXED + MAX_TOTAL_STACKS * PER_STACK + CLIENTS * MAX_LIVE * PER_SAMPLE
         + (CLIENTS + HOLDERS) * PER_CONNECTION + HOLDERS * (MAX_FRAME_BYTES + 8))

CLIENT = ("import sys; sys.path.insert(0, sys.argv[1]); import test_collector_support as s; "
          "s.flood_client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))")


class CollectorFloodTest(CollectorTestCase):
    collector_args = ("--max-total-stacks", str(MAX_TOTAL_STACKS), "--max-stacks", str(MAX_STACKS),
                      "--max-live-samples", str(MAX_LIVE), "--max-processes", "128",
                      "--poll-interval", "0.5")

    def test_flood_stays_bounded(self):
        pid = self.collector.proc.pid
        idle = rss_bytes(pid)
        here = os.path.dirname(os.path.abspath(__file__))
        clients = []
        for i in range(CLIENTS):
            c = subprocess.Popen([sys.executable, "-c", CLIENT, here, self.collector.socket_path,
                                  str(1 + i * STACKS_PER_CLIENT), str(STACKS_PER_CLIENT), str(DEPTH)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            clients.append(c)
        self.addCleanup(lambda: [(c.kill(), c.wait()) for c in clients if c.poll() is None])
        for c in clients:
            self.assertEqual(c.stdout.readline(), "sent\n")

        def all_applied():
            procs = [p for p in self.collector.get_json("/api/v1/processes")["processes"]
                     if p["exe"] == "/bin/flood"]
            done = [p for p in procs if p["counters"]["events"] == STACKS_PER_CLIENT
                    and p["counters"]["sampled_allocs"] == STACKS_PER_CLIENT]
            return procs if len(done) == CLIENTS else None
        procs = wait_until(all_applied, timeout=120, what="all flood clients' frames applied")
        self.assertEqual(len({p["pid"] for p in procs}), CLIENTS)

        # The caps held, and every refusal is counted.
        kept = sum(p["stacks"] for p in procs)
        overflow = sum(1 for p in procs if p["counters"]["evicted_stacks"])
        self.assertEqual(kept - overflow, MAX_TOTAL_STACKS, "exactly the global stack budget kept")
        evicted = CLIENTS * STACKS_PER_CLIENT - MAX_TOTAL_STACKS
        self.assertEqual(sum(p["counters"]["evicted_stacks"] for p in procs), evicted)
        self.assertEqual(metric(self.collector, "heapwatch_evictions_total", table="stacks"), evicted)
        for p in procs:
            self.assertLessEqual(p["live_samples"], MAX_LIVE)
        evicted_samples = CLIENTS * (STACKS_PER_CLIENT - MAX_LIVE)
        self.assertEqual(metric(self.collector, "heapwatch_evictions_total", table="live_samples"),
                         evicted_samples)
        # Profiles of a process past the cap are still served, the overflow
        # included.
        tree = self.collector.get_json(f"/api/v1/profile?pid={procs[-1]['pid']}&type=alloc_objects")
        self.assertEqual(round(tree["total"]), STACKS_PER_CLIENT)

        after_stacks = rss_bytes(pid)

        # Garbage from many clients at once: each closed with a reason.
        rng = random.Random(4)
        before = sum(ingest_errors(self.collector).values())
        garbage = []
        for _ in range(GARBAGE_CLIENTS):
            g = FakeShim(self.collector.socket_path)
            g.send(bytes(rng.getrandbits(8) for _ in range(4096)))
            garbage.append(g)
        for g in garbage:
            self.assertTrue(g.closed_by_peer())
            g.close()
        wait_until(lambda: sum(ingest_errors(self.collector).values()) == before + GARBAGE_CLIENTS,
                   what="every garbage connection counted")

        # Connections holding a frame one byte short of complete: the worst a
        # peer can make the collector buffer.
        holders = []
        for _ in range(HOLDERS):
            h = FakeShim(self.collector.socket_path)
            h.send(HEADER.pack(MAX_FRAME_BYTES, T_EVENTS, 0) + b"\0" * (MAX_FRAME_BYTES - 1))
            holders.append(h)
        wait_until(lambda: metric(self.collector, "heapwatch_ingest_connections") >= CLIENTS + HOLDERS,
                   what="holders connected")
        wait_until(lambda: metric(self.collector, "heapwatch_ingest_bytes_total") >=
                   HOLDERS * MAX_FRAME_BYTES, what="held frames received")

        peak = hwm_bytes(pid)
        now = rss_bytes(pid)
        print(f"\nheapwatchd RSS: idle {idle / MiB:.1f} MiB, after the stacks {after_stacks / MiB:.1f} MiB, "
              f"with the held frames {now / MiB:.1f} MiB, "
              f"peak {peak / MiB:.1f} MiB; bound {BOUND / MiB:.1f} MiB", file=sys.stderr)
        self.assertLess(peak, BOUND, f"peak RSS {peak / MiB:.1f} MiB over the bound {BOUND / MiB:.1f} MiB")
        self.assertEqual(metric(self.collector, "heapwatch_collector_rss_bytes") // MiB > 0, True)

        for h in holders:
            h.close()
        wait_until(lambda: ingest_errors(self.collector).get("truncated_frame", 0) == HOLDERS,
                   what="held frames counted as truncated")
        # Still healthy: a new client is accepted and applied.
        for c in clients:
            c.stdin.close()
            c.wait(30)
        self.assertEqual(self.collector.request("/healthz")[0], 200)
        self.assertIsNone(self.collector.proc.poll())


if __name__ == "__main__":
    unittest.main()
