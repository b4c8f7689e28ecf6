"""Short-lived processes under the shim against the real heapwatchd: each one
must deliver its hello, module map, stacks and every event before it exits,
even when many start and exit at once; and exiting must stay prompt when the
collector is absent or stuck (the shim waits at most 1 s at exit)."""
import os
import socket
import subprocess
import tempfile
import time
import unittest

from harness import CollectorTestCase, shim_env, wait_until
from test_shim_support import program

COUNT, BYTES, KEEP = 100, 4096, 10   # shim_short's allocations (all sampled at R = 1)
EXIT_BOUND_S = 1.0                   # FlushSenderAtExit's timeout (interposer.cc)


class ShortLivedTest(CollectorTestCase):
    def run_batch(self, n, cmd, **env):
        procs = [subprocess.Popen(cmd, env=shim_env(self.collector, **env),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(n)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
        return [p.pid for p in procs]

    def test_every_short_lived_process_delivers_all_its_events(self):
        # 20 processes, 10 starting at once: a burst on 2 cores, where each
        # sender connects late if at all before its process exits.
        cmd = [program("shim_short"), str(COUNT), str(BYTES), str(KEEP)]
        pids = self.run_batch(10, cmd, SAMPLE_BYTES=1) + self.run_batch(10, cmd, SAMPLE_BYTES=1)

        def all_listed():
            listed = {p["pid"]: p for p in self.collector.get_json("/api/v1/processes")["processes"]}
            return listed if all(pid in listed for pid in pids) else None
        listed = wait_until(all_listed, 20, what="all 20 short-lived processes listed")
        for pid in pids:
            p = listed[pid]
            with self.subTest(pid=pid):
                self.assertTrue(p["exe"].endswith("shim_short"), p)
                self.assertEqual(p["counters"]["dropped_events"], 0, p)
                # Every allocation, including the 90 freed before exit: the
                # events themselves, not a table re-sent at connect time.
                self.assertGreaterEqual(p["alloc_objects"], COUNT, p)
                self.assertGreaterEqual(p["counters"]["events"], 2 * COUNT - KEEP, p)
                self.assertEqual(p["heap_objects"], KEEP, p)
                self.assertEqual(p["heap_bytes"], KEEP * BYTES, p)
                self.assertGreaterEqual(p["stacks"], 1, p)
                self.assertGreaterEqual(p["modules"], 3, p)  # exe, libc, the shim at least
                self.assertEqual(p["counters"]["sampled_allocs"], COUNT, p)

    def test_a_burst_wakes_the_sender_before_the_ring_fills(self):
        # 1000 samples ~50-100 us apart into a 64-slot ring: several times
        # what the ring holds over the sender's shortest sleep (10 ms). Before
        # the pushes woke the sender every half ring, ~80% of these events
        # were dropped (and the table re-sent three times); with it, none on
        # an idle machine. The bound leaves room for a loaded one: the sender
        # must run within ~2 ms of a wake-up.
        cmd = [program("shim_short"), "1000", "64", "1000", "50"]
        [pid] = self.run_batch(1, cmd, SAMPLE_BYTES=1, RING_SLOTS=64)
        p = self.collector.wait_for_process(
            pid, lambda p: p["counters"]["sampled_allocs"] == 1000, timeout=20)
        self.assertLess(p["counters"]["dropped_events"], 150, p)
        self.assertEqual(p["heap_objects"], 1000, p)

    def test_real_short_programs_show_up(self):
        # ls and cat allocate (stdio, directory buffers, locale). true does
        # not allocate after the shim starts: it never samples, so it never
        # starts its sender and says nothing (preload/README, "Connecting,
        # and exiting"); it used to say hello and wait for it at exit.
        runs = []
        for cmd in (["/bin/ls", "/"], ["/bin/cat", "/etc/hostname"], ["/bin/true"]) * 3:
            runs += [(cmd[0], pid) for pid in self.run_batch(1, cmd, SAMPLE_BYTES=1)]
        for exe, pid in runs:
            if exe.endswith("true"):
                continue
            p = self.collector.wait_for_process(pid, timeout=20)
            self.assertEqual(p["counters"]["dropped_events"], 0, p)
            self.assertGreaterEqual(p["modules"], 3, p)
            self.collector.wait_for_process(pid, lambda p: p["stacks"] >= 1, timeout=5)
            self.assertGreaterEqual(p["alloc_objects"], 10, p)
        # Every other process has been listed, each after true's before it.
        listed = {p["pid"] for p in self.collector.get_json("/api/v1/processes")["processes"]}
        self.assertFalse({pid for exe, pid in runs if exe.endswith("true")} & listed)


class ExitBoundTest(unittest.TestCase):
    """No collector to deliver to: exiting never waits longer than the bound."""

    def timed_run(self, socket_path):
        env = shim_env(socket_path=socket_path, SAMPLE_BYTES=1)
        t0 = time.monotonic()
        p = subprocess.run([program("shim_short"), str(COUNT), str(BYTES), str(KEEP)],
                           env=env, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return time.monotonic() - t0

    def test_absent_collector_does_not_delay_exit(self):
        # The shim gives up at its first refused connect; 0.5 s leaves room
        # for a slow start on a loaded machine but not for the 1 s bound.
        times = sorted(self.timed_run("/nonexistent/heapwatch.sock") for _ in range(5))
        self.assertLess(times[2], 0.5 * EXIT_BOUND_S, times)

    def test_stuck_collector_delays_exit_by_at_most_the_bound(self):
        # A collector that listens but never accepts, its backlog full:
        # connect fails with EAGAIN, which is worth retrying until the bound.
        workdir = tempfile.mkdtemp(prefix="hw-stuck-")
        path = os.path.join(workdir, "hw.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(0)
        fillers = []
        try:
            while True:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.setblocking(False)
                try:
                    c.connect(path)
                except BlockingIOError:
                    c.close()
                    break
                fillers.append(c)
                self.assertLess(len(fillers), 1000, "backlog never filled")
            elapsed = self.timed_run(path)
            self.assertLess(elapsed, EXIT_BOUND_S + 2.0)
            self.assertGreaterEqual(elapsed, 0.9 * EXIT_BOUND_S,
                                    "gave up at once instead of retrying a full backlog")
        finally:
            for c in fillers:
                c.close()
            listener.close()
            os.unlink(path)
            os.rmdir(workdir)


if __name__ == "__main__":
    unittest.main()
