"""Threads past HEAPWATCH_UNWIND_CACHES unwind with unw_step instead of
unw_backtrace and its 256 KiB per-thread trace cache (preload/unwinder.h).
A thread steps for its first 15 samples and then takes a cache if one is
free. Both ways must give the same stacks: six threads each allocate 64
blocks in one function (every allocation sampled) and stay alive, with a cap
of 0 (every thread steps throughout), 2 (two switch to the cache, four keep
stepping) and the default (all six switch). Each time the collector must
show every block under one path ending in shim_threads::Hoard, called from
shim_threads::WorkerMain, and the path must be the same all three times.
With HEAPWATCH_UNWIND=fp the path is libunwind's as far as frame pointers go."""
import unittest

from harness import CollectorTestCase, wait_until
from test_collector_support import metric
from test_shim_support import finish_interactive, start_interactive

THREADS, BLOCKS, BYTES = 6, 64, 4096


def hoard_paths(node, names=()):
    """(names from the root's child down to it, node) for each Hoard node."""
    names = names + (node.get("name", ""),)
    if node.get("name", "").startswith("shim_threads::Hoard"):
        yield names[1:], node
    for child in node.get("children", []):
        yield from hoard_paths(child, names)


class UnwindCachesTest(CollectorTestCase):
    def hoard_path(self, **caches):
        proc = start_interactive(self, "shim_threads", SAMPLE_BYTES=1, **caches)
        pid = proc.pid
        total = THREADS * BLOCKS * BYTES

        def all_under_hoard():
            tree = self.collector.get_json(f"/api/v1/profile?pid={pid}&type=inuse_space")
            found = list(hoard_paths(tree["root"]))
            # Names come from the symbolizer a little after the events.
            return found if sum(n["value"] for _, n in found) >= total else None

        wait_until(all_under_hoard, 30, what=f"{total} bytes under shim_threads::Hoard")
        # The worker names each module's frames when it gets to them, so the
        # first read can have the program's names and libc's offsets (a
        # clean-clone CI run compared 'libc.so.6+0x1098ec' with 'clone3').
        # Read again each time the symbolizer is idle, until two reads agree:
        # a read queues what it could not name, and the next one after the
        # worker is idle again has it.
        previous = None

        def names_settled():
            nonlocal previous
            wait_until(lambda: metric(self.collector, "heapwatch_symbolizer_pending_batches") == 0,
                       30, what="the symbolizer idle")
            found = all_under_hoard()
            paths = [names for names, _ in found] if found else None
            settled = paths is not None and paths == previous
            previous = paths
            return found if settled else None

        found = wait_until(names_settled, 30, what="names that no longer change")
        self.assertEqual(len(found), 1, f"{caches}: Hoard reached by several paths: "
                                        f"{[names for names, _ in found]}")
        names, node = found[0]
        self.assertEqual(node["value"], total, caches)
        self.assertIn("shim_threads::WorkerMain", [n.split("(")[0] for n in names], names)
        finish_interactive(self, proc)
        return names

    def test_frame_pointer_walk_gives_libunwinds_inner_frames(self):
        # HEAPWATCH_UNWIND=fp on the same six threads, through the collector
        # and the symbolizer: again one path, libunwind's as far as frame
        # pointers go. The program and the std::thread code built into it
        # have them; the walk stops after the return into libstdc++'s thread
        # start, short of glibc's start_thread and clone3.
        walked = self.hoard_path(UNWIND="fp")
        unwound = self.hoard_path()
        self.assertGreaterEqual(len(walked), 3, walked)
        self.assertLess(len(walked), len(unwound), walked)
        self.assertEqual(walked, unwound[-len(walked):])

    def test_stepping_threads_give_the_same_stacks(self):
        stepping = self.hoard_path(UNWIND_CACHES=0)
        mixed = self.hoard_path(UNWIND_CACHES=2)
        cached = self.hoard_path()
        self.assertEqual(stepping, cached)
        self.assertEqual(mixed, cached)


if __name__ == "__main__":
    unittest.main()
