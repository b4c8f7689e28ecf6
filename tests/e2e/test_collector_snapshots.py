"""Snapshots on the real heapwatchd: taken, listed, served (JSON and pprof),
kept across a collector restart, used as the base of a diff; an unwritable or
full data directory is an error status and a counter, not a crash, and
/readyz says so."""
import gzip
import os
import subprocess
import shutil
import tempfile
import unittest

from harness import DEMO, Collector, CollectorTestCase, HttpError, find_node, wait_until, walk_tree
from test_collector_support import ALLOC, FakeShim, events, hello, metric, stack

LEAK = "RememberSession"  # SessionStore::RememberSession(unsigned long, unsigned long)


class LenientCollector(Collector):
    """Counts as started once it answers /healthz (its data dir may be broken)."""

    ready_path = "/healthz"


def feed_fake_process(collector, exe="/bin/snap-me", stacks=1, size=1000):
    """A fake shim holding `stacks` allocations of `size` bytes, one per stack."""
    shim = FakeShim(collector.socket_path)
    data = hello(exe=exe)
    for i in range(1, stacks + 1):
        data += stack(i, [0x400000 + i * 64, 0x500000 + i * 64, 0x600000])
    for i in range(0, stacks, 1000):
        data += events([(ALLOC, 0x10000 + j * 64, size, j + 1) for j in range(i, min(stacks, i + 1000))])
    shim.send(data)
    pid = os.getpid()
    wait_until(lambda: any(p["exe"] == exe and p["live_samples"] == stacks
                           for p in collector.get_json("/api/v1/processes")["processes"]),
               what=f"{exe} with {stacks} live samples")
    return shim, pid


class CollectorSnapshotTest(CollectorTestCase):
    def test_take_list_serve_restart_and_diff(self):
        demo = self.spawn([DEMO, "--threads", "2", "--rps", "300", "--leak-bytes", "16384"],
                          SAMPLE_BYTES=65536)
        pid = demo.pid

        def leak_bytes():
            node = find_node(self.collector.get_json(f"/api/v1/profile?pid={pid}")["root"], LEAK)
            return node["value"] if node else 0
        wait_until(lambda: leak_bytes() >= 2 << 20, timeout=30, what="leak visible and named")

        status, body = self.collector.post_json(f"/api/v1/snapshots?pid={pid}")
        self.assertEqual(status, 201)
        sid = body["id"]
        listed = self.collector.get_json("/api/v1/snapshots")["snapshots"]
        self.assertEqual([s["id"] for s in listed], [sid])
        self.assertEqual(listed[0]["pid"], pid)
        self.assertEqual(listed[0]["reason"], "manual")
        self.assertGreater(listed[0]["size_bytes"], 0)
        doc = self.collector.get_json(f"/api/v1/snapshots/{sid}")
        for key in ("process", "profile", "timeline", "leaks"):
            self.assertIn(key, doc)
        self.assertEqual(doc["process"]["pid"], pid)
        pprof = self.collector.request(f"/api/v1/snapshots/{sid}/pprof")[2]
        self.assertGreater(len(gzip.decompress(pprof)), 100)
        files = sorted(os.listdir(os.path.join(self.collector.data_dir, "snapshots")))
        self.assertEqual(files, [f"{sid}.json", f"{sid}.pb.gz"], "no temporaries left")

        # Diff against the snapshot: base and delta on every node; the leak grew.
        wait_until(lambda: leak_bytes() >= (2 << 20) + (1 << 20), timeout=30, what="the leak grows")
        tree = self.collector.get_json(f"/api/v1/profile?pid={pid}&base={sid}")
        self.assertEqual(tree["base"], sid)
        for node in walk_tree(tree["root"]):
            self.assertIn("base", node, node.get("name"))
            self.assertAlmostEqual(node["delta"], node["value"] - node["base"], delta=1.0)
        leak = find_node(tree["root"], LEAK)
        self.assertGreater(leak["delta"], 0)
        self.assertGreater(leak["base"], 0)
        snap_root_value = tree["root"]["base"]
        with self.assertRaises(HttpError) as e:
            self.collector.get_json(f"/api/v1/profile?pid={pid}&base=20990101T000000Z-1-1")
        self.assertEqual(e.exception.code, 404)

        # A restart on the same data dir: still listed and served.
        self.assertEqual(self.collector.stop(), 0)
        again = Collector(workdir=self.collector.workdir, data_dir=self.collector.data_dir).start()
        self.addCleanup(again.cleanup)
        self.assertEqual([s["id"] for s in again.get_json("/api/v1/snapshots")["snapshots"]], [sid])
        self.assertEqual(again.get_json(f"/api/v1/snapshots/{sid}")["process"]["pid"], pid)
        self.assertEqual(again.request(f"/api/v1/snapshots/{sid}/pprof")[2], pprof)
        # The restarted collector diffs the reconnected demo against the old snapshot.
        again.wait_for_process(pid, lambda p: p["connected"] and p["live_samples"] > 0)
        tree = wait_until(lambda: (lambda t: t if find_node(t["root"], LEAK) else None)(
            again.get_json(f"/api/v1/profile?pid={pid}&base={sid}")), what="diff after restart")
        self.assertEqual(tree["root"]["base"], snap_root_value)

    def test_bad_parameters(self):
        for method, path, code in (("POST", "/api/v1/snapshots", 400),
                                   ("POST", "/api/v1/snapshots?pid=999999999", 404),
                                   ("GET", "/api/v1/snapshots/..", 400),
                                   ("GET", "/api/v1/snapshots/nope", 404),
                                   ("GET", "/api/v1/snapshots/nope/pprof", 404),
                                   ("PUT", "/api/v1/snapshots", 405)):
            with self.subTest(path=path):
                with self.assertRaises(HttpError) as e:
                    self.collector.request(path, method=method, body=b"" if method != "GET" else None)
                self.assertEqual(e.exception.code, code)


class CollectorBrokenDataDirTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hw-snap-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start(self, data_dir):
        c = LenientCollector(workdir=os.path.join(self.dir, "c"), data_dir=data_dir)
        os.makedirs(c.workdir, exist_ok=True)
        c.start()
        self.addCleanup(c.cleanup)
        return c

    def readyz(self, c):
        try:
            return c.request("/readyz")[0], ""
        except HttpError as e:
            return e.code, e.body.decode()

    def post_snapshot(self, c, pid):
        try:
            status, _, body = c.request(f"/api/v1/snapshots?pid={pid}", method="POST", body=b"")
            return status, body.decode()
        except HttpError as e:
            return e.code, e.body.decode()

    def test_file_where_the_folder_should_be(self):
        path = os.path.join(self.dir, "not-a-dir")
        with open(path, "w") as f:
            f.write("x")
        c = self.start(path)
        status, reason = self.readyz(c)
        self.assertEqual(status, 503)
        self.assertIn("not-a-dir", reason)
        shim, pid = feed_fake_process(c)
        self.addCleanup(shim.close)
        status, body = self.post_snapshot(c, pid)
        self.assertEqual(status, 507, body)
        self.assertIn("not-a-dir", body)
        self.assertEqual(metric(c, "heapwatch_snapshot_errors_total"), 1)
        # Profiles are still served.
        self.assertEqual(c.request(f"/api/v1/profile?pid={pid}")[0], 200)
        self.assertIsNone(c.proc.poll())

    def test_full_disk(self):
        if os.getuid() != 0:
            self.skipTest("needs root to mount a tiny tmpfs")
        mnt = os.path.join(self.dir, "mnt")
        os.makedirs(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt], capture_output=True)
        if r.returncode != 0:
            self.skipTest(f"cannot mount tmpfs: {r.stderr!r}")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        c = self.start(mnt)
        self.assertEqual(self.readyz(c)[0], 200)
        small, pid = feed_fake_process(c, exe="/bin/small", stacks=1)
        status, body = self.post_snapshot(c, pid)
        self.assertEqual(status, 201, body)
        first = body
        small.close()
        # A process with enough stacks that its snapshot cannot fit.
        big, pid = feed_fake_process(c, exe="/bin/big", stacks=6000)
        self.addCleanup(big.close)
        status, body = self.post_snapshot(c, pid)
        self.assertEqual(status, 507, body)
        self.assertIn("No space left on device", body)
        self.assertEqual(metric(c, "heapwatch_snapshot_errors_total"), 1)
        self.assertEqual(metric(c, "heapwatch_snapshots_written_total"), 1)
        # Nothing half-written remains; the first snapshot is intact.
        names = os.listdir(os.path.join(mnt, "snapshots"))
        self.assertFalse([n for n in names if n.startswith(".tmp")], names)
        self.assertEqual(len(names), 2, names)
        sid = [s["id"] for s in c.get_json("/api/v1/snapshots")["snapshots"]]
        self.assertEqual(len(sid), 1)
        self.assertIn(sid[0], first)
        self.assertEqual(c.get_json(f"/api/v1/snapshots/{sid[0]}")["process"]["exe"], "/bin/small")
        # Fill the disk to the brim: readiness reports it.
        with open(os.path.join(mnt, "filler"), "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        status, reason = self.readyz(c)
        self.assertEqual(status, 503, reason)
        self.assertIn("No space left", reason)
        os.unlink(os.path.join(mnt, "filler"))
        self.assertEqual(self.readyz(c)[0], 200, "ready again once there is room")
        self.assertIsNone(c.proc.poll())


if __name__ == "__main__":
    unittest.main()
