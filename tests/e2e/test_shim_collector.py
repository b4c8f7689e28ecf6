"""The shim against the real heapwatchd: the churn program's live heap as the
collector sees it, before and after the collector is killed and restarted
(no phantom leak after the resync), seen through /api/v1/processes and
/api/v1/profile."""
import signal
import time
import unittest

from harness import CollectorTestCase, find_node, wait_until
from test_shim_support import start_interactive

MARKER_BYTES = 64 * 200003        # shim_churn's 64 live marker blocks
NOISE_SLACK = 1536 << 10          # its 256 small blocks (< 3 KB each) plus estimate noise


class ShimCollectorTest(CollectorTestCase):
    def start_churn(self):
        return start_interactive(self, "shim_churn", SAMPLE_BYTES=4096)

    @staticmethod
    def command(proc, c):
        proc.stdin.write(c)
        proc.stdin.flush()
        if c == "p":
            proc.stdout.readline()  # live addresses
            return int(proc.stdout.readline().split()[1])
        return None

    def heap_is_exact(self, pid):
        """The collector's live heap equals the program's (within the noise)."""
        p = self.collector.process(pid)
        if not p or not p["connected"]:
            return None
        ok = MARKER_BYTES <= p["heap_bytes"] <= MARKER_BYTES + NOISE_SLACK
        return p if ok else None

    def test_live_heap_before_and_after_collector_restart(self):
        churn = self.start_churn()
        pid = churn.pid
        proc = self.collector.wait_for_process(pid, lambda p: p["connected"])
        self.assertTrue(proc["exe"].endswith("shim_churn"), proc["exe"])
        self.assertEqual(proc["sample_bytes"], 4096)

        self.command(churn, "p")
        proc = wait_until(lambda: self.heap_is_exact(pid),
                          what="heap estimate = the program's live heap")
        self.assertGreaterEqual(proc["live_samples"], 64)
        # Names may take a moment (symbolization is the collector's business).
        def main_node():
            tree = self.collector.get_json(f"/api/v1/profile?pid={pid}&type=inuse_space")
            node = find_node(tree["root"], lambda n: n["name"] == "main")
            return (tree, node) if node else None
        tree, main = wait_until(main_node, what="main() in the profile")
        self.assertGreaterEqual(tree["total"], MARKER_BYTES)
        self.assertTrue(main["module"].endswith("shim_churn"), main)
        self.assertGreaterEqual(main["value"], MARKER_BYTES, "main() holds the marker blocks")
        self.command(churn, "r")

        # The collector dies; the program does not notice.
        self.collector.kill()
        rounds = self.command(churn, "p")
        self.command(churn, "r")
        time.sleep(1.5)
        self.assertGreater(self.command(churn, "p"), rounds, "the program kept running")
        self.command(churn, "r")
        self.assertIsNone(churn.poll())

        # The collector comes back on the same socket; the shim reconnects and
        # resyncs. Marker blocks replaced while nobody listened must not linger.
        self.collector.start()
        self.collector.wait_for_process(pid, lambda p: p["connected"])
        self.command(churn, "p")
        proc = wait_until(lambda: self.heap_is_exact(pid),
                          what="heap estimate after the restart = the program's live heap")
        self.assertGreaterEqual(proc["counters"]["reconnects"], 1)
        self.assertGreaterEqual(proc["counters"]["dropped_events"], 1)
        self.command(churn, "q")
        self.assertEqual(churn.wait(30), 0)


if __name__ == "__main__":
    unittest.main()
