"""The shim over jemalloc and tcmalloc (preloaded after it), and the warning
when an allocator is preloaded before it."""
import os
import unittest

from test_shim_support import (JEMALLOC, SHIM, TCMALLOC, ShimSocketTest, WireReceiver, marker_frames,
                               program, run, shim_env, wait_until)
from test_shim_api import KEPT, MARKERS


class ShimAllocatorsTest(ShimSocketTest):

    def check_allocator(self, allocator, extra_env):
        api = program("shim_api_edge")
        env = dict(extra_env, SHIM_MARKERS="1")
        base = run([api], env, preload=allocator)
        # Exit status 1 is fine here: jemalloc's failed realloc leaves errno
        # alone and tcmalloc's calloc overflow too; the shim must only not
        # change what the allocator does.
        self.assertIn(base.returncode, (0, 1), base.stderr)
        want = set(MARKERS)
        if "SHIM_SKIP_PVALLOC" in extra_env:
            want.discard(1000008)
        stacks = {}
        for unwind in ("libunwind", "fp"):
            rx = WireReceiver(self.sock)
            self.addCleanup(rx.stop)
            r = run([api], shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1, HEAPWATCH_RING_SLOTS=1 << 20,
                                    **dict(env, **({"HEAPWATCH_UNWIND": "fp"} if unwind == "fp" else {}))),
                    preload=f"{SHIM}:{allocator}")
            self.assertEqual(r.returncode, base.returncode, r.stderr)
            self.assertEqual(r.stdout, base.stdout)
            self.assertEqual(r.stderr, base.stderr)
            main = wait_until(lambda: [c for c in rx.snapshot() if c.closed and c.hello and
                                       c.hello["ppid"] == os.getpid()],
                              what="the program's connection closed")[0]
            rx.stop()
            self.assertEqual(main.errors, [])
            self.assertEqual(main.stats["dropped_events"], 0)
            # Every entry point recorded exactly once: C++ new/delete too,
            # although this allocator's operator new never calls malloc.
            markers = [s for s in main.alloc_sizes if s in MARKERS]
            self.assertEqual(sorted(markers), sorted(want), unwind)
            self.assertEqual({s for s, _ in main.live.values() if s in MARKERS}, {KEPT})
            stacks[unwind] = marker_frames(main, want)
        # The shim records C++ new and delete itself over this allocator
        # (other paths than over libstdc++); with frame pointers, every
        # marker's stack is the program's, as libunwind has it.
        self.assertFramePointerStacksMatch(stacks["fp"], stacks["libunwind"],
                                           os.path.basename(api), min_direct=len(want))

        stress = [program("shim_stress"), "3", "40000"]
        base = run(stress, preload=allocator)
        r = run(stress, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=4096),
                preload=f"{SHIM}:{allocator}")
        self.assertEqual(base.returncode, 0, base.stderr)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, base.stdout)

    def test_jemalloc(self):
        # jemalloc has no pvalloc: without the shim glibc's pvalloc would hand
        # jemalloc a block it cannot free, so the comparison leaves it out.
        self.check_allocator(JEMALLOC, {"SHIM_SKIP_PVALLOC": "1"})

    def test_tcmalloc(self):
        self.check_allocator(TCMALLOC, {})

    def test_allocator_preloaded_first_is_left_alone(self):
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        cmd = [program("shim_stress"), "2", "20000"]
        base = run(cmd, preload=JEMALLOC)
        r = run(cmd, shim_env(self.sock), preload=f"{JEMALLOC}:{SHIM}")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout, base.stdout)
        # One line per process (the stress program forks once).
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("put libheapwatch.so first", lines[0])
        self.assertEqual(rx.snapshot(), [])


if __name__ == "__main__":
    unittest.main()
