"""The shim over jemalloc and tcmalloc (preloaded after it), and the warning
when an allocator is preloaded before it."""
import unittest

from harness import CollectorTestCase, start_under_shim
from test_shim_support import (JEMALLOC, MARKERS, SHIM, TCMALLOC, ShimSocketTest, WireReceiver,
                               program, run, shim_env)


class ShimAllocatorsTest(ShimSocketTest):

    def check_allocator(self, allocator, extra_env):
        base = run([program("shim_api_edge")], dict(extra_env, SHIM_MARKERS="1"), preload=allocator)
        # Exit status 1 is fine here: jemalloc's failed realloc leaves errno
        # alone and tcmalloc's calloc overflow too; the shim must only not
        # change what the allocator does.
        self.assertIn(base.returncode, (0, 1), base.stderr)
        # Every entry point recorded exactly once: C++ new/delete too,
        # although this allocator's operator new never calls malloc.
        want = set(MARKERS)
        if "SHIM_SKIP_PVALLOC" in extra_env:
            want.discard(1000008)
        record = lambda **env: self.record_markers(f"{SHIM}:{allocator}", base, want,
                                                   **extra_env, **env)
        # The shim records C++ new and delete itself over this allocator
        # (other paths than over libstdc++); with frame pointers, every
        # marker's stack is the program's, as libunwind has it.
        self.assertFramePointerStacksMatch(record, want, min_direct=len(want))

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


class OtherCxxRuntimeTest(CollectorTestCase):
    """An operator new that is neither libstdc++'s nor an allocator's own
    (libc++'s kind: it calls malloc), preloaded after the shim. The shim's
    operator new counts the bytes, forwards to it, and its malloc lands in
    the shim's malloc: each byte must still count once."""

    def test_bytes_allocated_through_it_count_once(self):
        count, size, rate = 200000, 1000, 65536
        proc = start_under_shim([program("shim_new_bytes"), str(count), str(size)], self.collector,
                                SAMPLE_BYTES=rate,
                                LD_PRELOAD=f"{SHIM}:{program('libshim_new_forward.so')}")
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        p = self.collector.wait_for_process(proc.pid, lambda p: p["state"] == "exited", timeout=20)
        # ~3,000 samples, a standard error of ~2%. Counted by both the
        # operator and malloc, the estimate read 2x (396 MB).
        self.assertGreater(p["counters"]["sampled_allocs"], 2000, p)
        self.assertAlmostEqual(p["alloc_bytes"] / (count * size), 1.0, delta=0.15, msg=p)


if __name__ == "__main__":
    unittest.main()
