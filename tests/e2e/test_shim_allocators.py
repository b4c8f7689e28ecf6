"""The shim over jemalloc and tcmalloc (preloaded after it), and the warning
when an allocator is preloaded before it."""
import unittest

from harness import CollectorTestCase, start_under_shim
from test_shim_support import (JEMALLOC, MARKERS, SHIM, TCMALLOC, ShimSocketTest, WireReceiver,
                               program, real_python, run, shim_env)

# shim_jemalloc_api's markers: marker k has 2,000,000 + k bytes; the calloc
# of marker 4 is rallocx'ed to 4,000,005 bytes, mallocx'ed marker 6 is
# xallocx'ed in place to marker 7, marker 8's xallocx fails, and so does
# marker 10's rallocx (recorded as a free and an allocation of the block, as
# a failed realloc). All are freed (by sdallocx, dallocx or free) except
# marker 9.
JE_MARKERS = {2000000 + k for k in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)} | {4000005}
JE_RECORDED = sorted(JE_MARKERS) + [2000010]
JE_KEPT = 2000009
JE_CHURN = range(100000, 101000)
# Churn rounds of shim_jemalloc_api (R = 1: each is an event or two).
JE_ROUNDS = "4000"


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
        self.assertIn(f"in LD_PRELOAD ({JEMALLOC}); profiling disabled (put libheapwatch.so first)",
                      lines[0])
        self.assertEqual(rx.snapshot(), [])

    def test_calls_the_allocator_preloaded_first_lacks(self):
        # GNU sort grows its buffers with reallocarray, which neither jemalloc
        # nor tcmalloc defines: the call comes to the shim, whose realloc was
        # glibc's, handed the allocator's blocks ("realloc(): invalid
        # pointer", or tcmalloc's "Attempt to free invalid pointer").
        numbers = "".join(f"{(i * 7919) % 100003}\n" for i in range(100000))
        want = "".join(f"{n}\n" for n in sorted(int(x) for x in numbers.split()))
        for allocator in (JEMALLOC, TCMALLOC):
            with self.subTest(allocator=allocator):
                r = run(["sort", "-n"], shim_env(self.sock), preload=f"{allocator}:{SHIM}",
                        input=numbers)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, want)
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)


class OwnMallocTest(ShimSocketTest):
    def test_executable_with_its_own_malloc_is_left_alone(self):
        # Its malloc comes before any LD_PRELOAD entry's: the shim says so once
        # and stays a pass-through.
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        cmd = [program("shim_own_malloc")]
        base = run(cmd)
        r = run(cmd, shim_env(self.sock), preload=SHIM)
        self.assertEqual((r.returncode, r.stdout), (0, base.stdout))
        # reallocarray and free_sized come to the shim (the executable does
        # not define them), which must hand the blocks to the executable's
        # realloc and free, not glibc's.
        self.assertEqual(base.stdout, "own malloc calls: 2000\n"
                         "own realloc calls from reallocarray: 100, own frees: 100\n")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("the executable has a malloc of its own", lines[0])
        self.assertEqual(rx.snapshot(), [])

    def test_shim_loaded_by_dlopen_is_left_alone(self):
        # Not preloaded: the C library's malloc comes first, and the shim's
        # constructor says what happened rather than blame LD_PRELOAD.
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        script = (f"import ctypes; ctypes.CDLL({SHIM!r}); "
                  "print(sum(len(bytes(4096)) for _ in range(5000)))")
        r = run([real_python(), "-c", script], shim_env(self.sock))
        self.assertEqual((r.returncode, r.stdout), (0, f"{4096 * 5000}\n"), r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("libheapwatch.so was loaded after the C library (by dlopen?), not preloaded",
                      lines[0])
        self.assertEqual(rx.snapshot(), [])


class JemallocApiTest(ShimSocketTest):
    """jemalloc's own API (mallocx, rallocx, xallocx, dallocx, sdallocx) on
    blocks that the standard calls also allocate and free. A sampled block
    freed by sdallocx or dallocx used to stay in the shim's table for good: a
    leak that was not there."""

    def check_api(self, name, preload, base):
        """Runs `name` under `preload` (ShimSocketTest.record_run, R = 1); it
        must print what `base` (a run without the shim) printed, and every
        marker and churn block must be recorded once and freed."""
        self.assertEqual(base.returncode, 0, base.stdout + base.stderr)
        conn = self.record_run([program(name), JE_ROUNDS], preload, base)
        self.assertEqual(sorted(s for s in conn.alloc_sizes if s in JE_MARKERS), sorted(JE_RECORDED),
                         "each marker allocation exactly once, none twice")
        live = [s for s, _ in conn.live.values()]
        self.assertEqual([s for s in live if s in JE_MARKERS], [JE_KEPT],
                         "freed markers are gone from the live set, the kept one is live")
        self.assertEqual([s for s in live if s in JE_CHURN], [], "churn blocks left live")
        # Every allocation of the churn is recorded at R = 1 (about 2 in 3 of
        # its rounds allocate; the rest resize in place or free).
        self.assertGreater(sum(1 for s in conn.alloc_sizes if s in JE_CHURN), int(JE_ROUNDS) // 2)

    def test_program_linked_against_jemalloc(self):
        name = "shim_jemalloc_api"
        self.check_api(name, SHIM, run([program(name), JE_ROUNDS]))

    def test_api_looked_up_with_jemalloc_preloaded(self):
        name = "shim_jemalloc_probe"
        self.check_api(name, f"{SHIM}:{JEMALLOC}", run([program(name), JE_ROUNDS], preload=JEMALLOC))

    def test_stand_ins_over_other_allocators(self):
        # Without jemalloc the names resolve to the shim's stand-ins, built on
        # the allocator underneath (without the shim a program finds none).
        # A program that looks them up must see what it sees over jemalloc.
        over_jemalloc = run([program("shim_jemalloc_api"), JE_ROUNDS])
        for allocator in (None, TCMALLOC):
            with self.subTest(allocator=allocator):
                alone = run([program("shim_jemalloc_probe")], preload=allocator)
                self.assertEqual(alone.stdout, "no jemalloc API\n")
                self.check_api("shim_jemalloc_probe", ":".join(filter(None, (SHIM, allocator))),
                               over_jemalloc)


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
