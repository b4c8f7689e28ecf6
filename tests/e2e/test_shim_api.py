"""The shim under the API edge-case program and python3: same behaviour as
without the shim, and the right records on the wire (WireReceiver)."""
import os
import textwrap
import time
import unittest

from test_shim_support import (SHIM, ShimSocketTest, WireReceiver, marker_frames, program,
                               real_python, run, shim_env, wait_until)

MARKER_BASE = 1000000
# Marker k has size MARKER_BASE + k, except aligned_alloc's and aligned new's
# (multiples of their alignments).
MARKERS = {MARKER_BASE + k for k in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14, 64, 192)}
KEPT = MARKER_BASE + 14


class ShimApiTest(ShimSocketTest):
    def setUp(self):
        super().setUp()
        self.api = program("shim_api_edge")

    def baseline(self, cmd=None, **env):
        r = run(cmd or [self.api], env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_output_identical_without_a_collector(self):
        want = self.baseline()
        for extra in ({}, {"HEAPWATCH_SAMPLE_BYTES": "1"}, {"HEAPWATCH_SAMPLE_BYTES": "64"},
                      {"HEAPWATCH_UNWIND": "fp", "HEAPWATCH_SAMPLE_BYTES": "1"},
                      {"HEAPWATCH_UNWIND_CACHES": "0", "HEAPWATCH_SAMPLE_BYTES": "1"},
                      {"HEAPWATCH_DISABLE": "1"}):
            with self.subTest(**extra):
                r = run([self.api], shim_env(os.path.join(self.dir, "absent.sock"), **extra),
                        preload=SHIM)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, want)
                self.assertEqual(r.stderr, "", "the shim must not log")

    def record_markers(self, **extra):
        """Runs the API program's markers at R = 1 with a receiver; returns
        the program's connection once closed."""
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        want = self.baseline(SHIM_MARKERS="1")
        started_ns = time.time_ns()
        # A ring big enough that a slow Python receiver never makes it drop.
        r = run([self.api], shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1, SHIM_MARKERS=1,
                                     HEAPWATCH_RING_SLOTS=1 << 20, **extra),
                preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, want)
        main = wait_until(lambda: [c for c in rx.snapshot() if c.closed and c.hello and
                                   c.exe.endswith("shim_api_edge") and
                                   c.hello["ppid"] == os.getpid()],
                          what="the program's connection closed")[0]
        self.assertEqual(main.errors, [])
        rx.stop()
        # Events carry the time the sender noted at its last round (or the
        # clock before its first): CLOCK_REALTIME, at most a round behind.
        self.assertTrue(main.alloc_times)
        late = [t for t in main.alloc_times if not started_ns - 10**9 <= t <= time.time_ns()]
        self.assertEqual(late, [], "alloc times outside the program's run")
        return main

    def test_every_entry_point_is_recorded_once(self):
        main = self.record_markers()
        self.assertEqual(main.hello["sample_bytes"], 1)
        self.assertEqual(main.hello["max_frames"], 64)
        # Nothing was dropped (a ring of 1 Mi events) and this is the first
        # connection: the ring is replayed from its first event, no resync.
        self.assertEqual(main.resyncs, 0, "first connection replays the ring")
        markers = [s for s in main.alloc_sizes if s in MARKERS]
        self.assertEqual(sorted(markers), sorted(MARKERS),
                         "each marker allocation exactly once, none twice")
        self.assertEqual({s for s, _ in main.live.values() if s in MARKERS}, {KEPT},
                         "freed markers are gone from the live set, the kept one is live")

        # Stacks: the shim's own frames are skipped, the caller is the program.
        shim_mods = [m for m in main.modules if m["path"].endswith("libheapwatch.so")]
        exe_mods = [m for m in main.modules if m["path"] == main.exe]
        self.assertEqual(len(shim_mods), 1, [m["path"] for m in main.modules])
        self.assertEqual(len(exe_mods), 1)
        self.assertTrue(all(m["build_id"] for m in main.modules), main.modules)
        self.assertFalse(any(m["path"].startswith("linux-vdso") for m in main.modules))
        kept_stack = next(main.stacks[sid] for s, sid in main.live.values() if s == KEPT)
        exe = exe_mods[0]
        self.assertTrue(exe["start"] <= kept_stack[0] < exe["end"],
                        "innermost frame is the program's call to malloc")
        for pcs in main.stacks.values():
            self.assertFalse(any(shim_mods[0]["start"] <= pc < shim_mods[0]["end"]
                                 for pc in pcs[:1]), "shim frames are skipped")
        self.assertIsNotNone(main.stats)
        self.assertGreater(main.stats["sampled_allocs"], 0)
        self.assertEqual(main.stats["dropped_events"], 0)

    def test_frame_pointer_stacks_match_libunwinds(self):
        # The program is built with frame pointers: for every entry point the
        # walk climbs out of the shim and gives the frames libunwind gives.
        stacks = {}
        for unwind in ("libunwind", "fp"):
            main = self.record_markers(**({"HEAPWATCH_UNWIND": "fp"} if unwind == "fp" else {}))
            stacks[unwind] = marker_frames(main, MARKERS)
            self.assertEqual(set(stacks[unwind]), MARKERS, unwind)
        self.assertFramePointerStacksMatch(stacks["fp"], stacks["libunwind"],
                                           os.path.basename(self.api), min_direct=10)

    def test_disabled_is_a_pure_pass_through(self):
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run([self.api], shim_env(self.sock, HEAPWATCH_DISABLE=1), preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.baseline())
        # The program has exited (and forked a child that exited): had either
        # connected, the receiver would have accepted it by now.
        self.assertEqual(rx.snapshot(), [])

    def test_python_script(self):
        script = os.path.join(self.dir, "work.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent("""
                import collections, json, re
                words = [("w%d" % (i * 7919 % 10007)) * (i % 5 + 1) for i in range(200000)]
                counts = collections.Counter(words)
                blob = json.dumps(sorted(counts.items())[:5000])
                print(len(counts), len(blob), sum(len(m) for m in re.findall(r"w\\d+", blob)))
                keep = [bytearray(100000) for _ in range(50)]
                print(sum(len(k) for k in keep))
                """))
        py = real_python()
        want = self.baseline([py, script])
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run([py, script], shim_env(self.sock), preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, want)
        conn = wait_until(lambda: [c for c in rx.snapshot() if c.closed and c.hello],
                          what="python's connection")[0]
        self.assertEqual(conn.errors, [])
        self.assertEqual(os.path.realpath(conn.exe), py)
        self.assertGreater(conn.stats["sampled_allocs"], 10)
        self.assertGreater(len(conn.stacks), 0)


if __name__ == "__main__":
    unittest.main()
