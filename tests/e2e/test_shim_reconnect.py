"""The collector goes away mid-run and comes back: the program runs on, the
shim reconnects (backoff capped at 500 ms), and after the resync the
receiver's live set is exactly the program's: no phantom leak, nothing lost.

And a program that closes every descriptor it did not open (as daemons do)
closes the shim's socket: the shim neither writes into, reads from nor
closes the descriptors the program opens next, and connects again. Also
where libunwind's pipe is, and when it is opened."""
import os
import resource
import time
import unittest

from test_shim_support import ShimSocketTest, WireReceiver, command, start_on_socket, wait_until

MARKER_SIZE = 200003  # shim_churn's marker blocks


class ShimReconnectTest(ShimSocketTest):

    def start_churn(self):
        # R = 4 KiB makes a 200 KB marker block sampled with probability
        # 1 - exp(-48.8): all 64 of them, always.
        return start_on_socket(self, "shim_churn", self.sock, HEAPWATCH_SAMPLE_BYTES=4096)

    @staticmethod
    def pause(proc):
        proc.stdin.write("p")
        proc.stdin.flush()
        live = proc.stdout.readline().split()
        assert live[0] == "live", live
        rounds = int(proc.stdout.readline().split()[1])
        return {int(a, 16) for a in live[1:]}, rounds

    @staticmethod
    def resume(proc):
        proc.stdin.write("r")
        proc.stdin.flush()

    def assert_view_matches(self, rx, proc, conn_index):
        want, _ = self.pause(proc)
        self.assertEqual(len(want), 64)
        conn = wait_until(lambda: rx.snapshot()[conn_index]
                          if len(rx.snapshot()) > conn_index else None,
                          what=f"connection #{conn_index + 1}")
        wait_until(lambda: conn.live_of_size(MARKER_SIZE) == want, timeout=30,
                   what="the receiver's marker blocks to equal the program's")
        self.assertEqual(conn.errors, [])
        self.resume(proc)
        return conn

    def test_collector_restart(self):
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        proc = self.start_churn()
        time.sleep(0.5)
        first = self.assert_view_matches(rx, proc, 0)

        rx.stop()  # the collector dies
        _, rounds_before = self.pause(proc)
        self.resume(proc)
        time.sleep(1.5)  # churn on, unobserved: these events are dropped
        _, rounds_after = self.pause(proc)
        self.resume(proc)
        self.assertGreater(rounds_after, rounds_before, "the program kept running")
        self.assertIsNone(proc.poll())
        wait_until(lambda: first.closed, what="the old connection to close")

        rx.start()  # the collector is back on the same path
        second = self.assert_view_matches(rx, proc, 1)
        self.assertEqual(second.hello["pid"], first.hello["pid"])
        self.assertGreaterEqual(second.resyncs, 1)
        wait_until(lambda: second.stats and second.stats["reconnects"] >= 1,
                   what="kStats with reconnects >= 1")
        wait_until(lambda: second.stats["dropped_events"] > 0,
                   what="events dropped while disconnected, counted")

        # And once more, to be sure the view stays exact while churning.
        self.assert_view_matches(rx, proc, 1)
        proc.stdin.write("q")
        proc.stdin.flush()
        self.assertEqual(proc.wait(timeout=30), 0)


class ShimClosedSocketTest(ShimSocketTest):
    MARKER = 300007  # shim_fd_closer's kept blocks, sampled always at R = 4 KiB

    def command(self, proc, line):
        return command(self, proc, line)

    def test_the_program_closes_the_shims_socket_and_opens_its_own(self):
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        proc = start_on_socket(self, "shim_fd_closer", self.sock, HEAPWATCH_SAMPLE_BYTES=4096)
        # The shim connects at the program's first sample: the first blocks.
        self.assertEqual(self.command(proc, "k 8"), "kept")
        first = wait_until(lambda: (rx.snapshot() or [None])[0], what="the program's connection")
        wait_until(lambda: len(first.live_of_size(self.MARKER)) == 8, what="8 kept blocks live")

        self.assertEqual(self.command(proc, "c"), "closed")
        # Its own sockets take the lowest free numbers, the shim's old one
        # among them; every message must pass unchanged, with nothing added.
        answer = self.command(proc, "x 3")
        self.assertTrue(answer.startswith("exchanged"), answer)
        wait_until(lambda: first.closed, what="the closed socket's connection to end")

        self.assertEqual(self.command(proc, "k 8"), "kept")
        second = wait_until(lambda: rx.snapshot()[1] if len(rx.snapshot()) > 1 else None,
                            what="the shim to connect again")
        self.assertEqual(second.hello["pid"], proc.pid)
        wait_until(lambda: len(second.live_of_size(self.MARKER)) == 16, timeout=30,
                   what="all 16 kept blocks live on the new connection")
        self.assertEqual(second.errors, [])
        self.assertEqual(self.command(proc, "x 1").split()[0], "exchanged")
        proc.stdin.write("q\n")
        proc.stdin.flush()
        self.assertEqual(proc.wait(timeout=30), 0)

    def pipes(self, pid):
        """The program's pipes other than its stdin, stdout and stderr."""
        fds = os.listdir(f"/proc/{pid}/fd")
        return sorted(int(fd) for fd in fds
                      if int(fd) > 2 and os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"))

    def mapped(self, pid):
        """Which of libunwind and liblzma the program has mapped."""
        with open(f"/proc/{pid}/maps") as f:
            paths = {line.split()[-1] for line in f if len(line.split()) >= 6}
        return {name for name in ("libunwind", "liblzma")
                if any(os.path.basename(p).startswith(name + ".so") for p in paths)}

    def test_libunwind_is_loaded_and_set_up_at_the_first_sample(self):
        # libunwind (and liblzma, its dependency) is loaded by the sender,
        # which starts at the process's first sample; its set-up opens a pipe
        # (it checks addresses through it), which the shim moves to high
        # numbers, at the first unwind. Neither happens at the process's
        # start: a process that never samples (most of a shell script's
        # commands) does not pay for them.
        # At R = 16 MiB the program's start (~10 KiB of allocations) samples
        # once in ~2,000 runs; such a run is started again.
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        for _ in range(3):
            proc = start_on_socket(self, "shim_fd_closer", self.sock, HEAPWATCH_SAMPLE_BYTES=16 << 20)
            before, loaded = self.pipes(proc.pid), self.mapped(proc.pid)
            if not before and not loaded:
                break
            proc.kill()
            proc.wait()
        self.assertEqual(before, [], "libunwind was set up before anything unwound (three runs)")
        self.assertEqual(loaded, set(), "libunwind was loaded before anything sampled (three runs)")
        # 1,024 blocks of 300,007 bytes: ~18 samples expected at this rate.
        self.assertEqual(self.command(proc, "k 1024"), "kept")
        conn = wait_until(lambda: next((c for c in rx.snapshot() if c.hello and c.hello["pid"] == proc.pid),
                                       None), what="the program's connection")
        wait_until(lambda: conn.live_of_size(self.MARKER), what="a kept block sampled")
        self.assertEqual(self.mapped(proc.pid), {"libunwind", "liblzma"})
        after = self.pipes(proc.pid)
        self.assertEqual(len(after), 2, after)
        # descriptors.h: from 3/4 of the soft limit (the program's is ours),
        # capped at 1024.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        high = min(soft if soft != resource.RLIM_INFINITY else 1024, 1024) // 4 * 3
        self.assertGreaterEqual(min(after), high, "the pipe moved to high numbers")
        # The sampled blocks have stacks (KeptAlloc, main, ...).
        for size, sid in list(conn.live.values()):
            if size == self.MARKER:
                self.assertGreater(len(conn.stacks[sid]), 1)
        proc.stdin.write("q\n")
        proc.stdin.flush()
        self.assertEqual(proc.wait(timeout=30), 0)


if __name__ == "__main__":
    unittest.main()
