"""free() reads one of the live table's two filters, the coarse or the fine
one, chosen by the sender from the number of live samples
(preload/live_table.h). shim_threads holds 6 x 64 blocks, every allocation
sampled; on a table of 4096 slots (512 coarse cells) that puts free() on the
fine filter within a sender round. The program then frees everything, and
every one of those frees must reach the collector: a filter that missed a
sample would leave it live for ever (a phantom leak). The default table
(2 Mi slots at this rate: free() stays on the coarse filter) is the control."""
import subprocess
import time
import unittest

from test_shim_support import SHIM, ShimSocketTest, WireReceiver, child_env, program, shim_env

THREADS, BLOCKS, BYTES = 6, 64, 4096


class ShimFiltersTest(ShimSocketTest):

    def hold_then_free(self, **extra):
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        env = child_env(shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1, **extra), preload=SHIM)
        proc = subprocess.Popen([program("shim_threads"), str(THREADS), str(BLOCKS), str(BYTES)],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.kill)
        self.assertEqual(proc.stdout.readline(), "ready\n")
        held = THREADS * BLOCKS

        def holding(conns):
            mine = [c for c in conns if c.pid == proc.pid]
            return mine[0] if mine and len(mine[0].live_of_size(BYTES)) >= held else None

        conn = rx.wait_for(holding, what=f"{held} live blocks of {BYTES} bytes")
        time.sleep(0.5)  # several sender rounds: the filter is chosen
        # stdio's buffers are blocks of this size too, and stay.
        before = conn.live_of_size(BYTES)
        proc.stdin.write("q\n")
        proc.stdin.flush()
        self.assertEqual(proc.wait(30), 0, proc.stderr.read())
        rx.wait_for(lambda _: conn.closed, what="the process's stream to end")
        self.assertEqual(conn.errors, [])
        self.assertEqual(conn.stats["dropped_events"], 0, conn.stats)
        after = conn.live_of_size(BYTES)
        self.assertTrue(after <= before, after - before)
        missed = len(after) - (len(before) - held)
        self.assertLessEqual(missed, 0, f"{missed} of {held} freed blocks still live")
        self.assertGreaterEqual(conn.stats["sampled_frees"], held, conn.stats)

    def test_every_free_is_seen_through_the_fine_filter(self):
        self.hold_then_free(HEAPWATCH_TABLE_SLOTS=4096)

    def test_every_free_is_seen_through_the_coarse_filter(self):
        self.hold_then_free()


if __name__ == "__main__":
    unittest.main()
