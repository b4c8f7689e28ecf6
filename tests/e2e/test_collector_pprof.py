"""The collector's pprof output read by the real `go tool pprof` (Debian's
golang-go), offline: the demo service leaking under the real shim, its live
profile from /debug/pprof/heap and a snapshot's from
/api/v1/snapshots/<id>/pprof."""
import os
import re
import unittest

import zlib

from harness import DEMO, CollectorTestCase, find_node, wait_until
from test_collector_support import ALLOC, FakeShim, GoPprof, events, hello, stack

LEAK = "RememberSession"  # DWARF names: the function, without its class
SAMPLE_TYPES = ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"]


def top_rows(text):
    """(flat, function) of each row of `pprof -top`, in order."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"^\s*(\S+)\s+\S+%\s+\S+%\s+\S+\s+\S+%\s+(.+)$", line)
        if m and m.group(1) != "flat":
            rows.append((m.group(1), m.group(2)))
    return rows


class CollectorPprofTest(CollectorTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pprof = GoPprof()
        if not cls.pprof.available():
            raise AssertionError("`go` not found: install Debian's golang-go")

    @classmethod
    def tearDownClass(cls):
        cls.pprof.cleanup()

    def start_leaking_demo(self):
        # 300 requests/s each leaking 16 KiB: ~5 MB/s, about 75 samples/s at
        # R = 64 KiB, so the leak dominates the live heap within seconds.
        demo = self.spawn([DEMO, "--threads", "2", "--rps", "300", "--leak-bytes", "16384"],
                          SAMPLE_BYTES=65536)
        pid = demo.pid

        def leak_named():
            tree = self.collector.get_json(f"/api/v1/profile?pid={pid}")
            node = find_node(tree["root"], LEAK)
            return node if node and node["value"] >= 4 << 20 else None
        wait_until(leak_named, timeout=30, what="the leak, named, holding 4 MiB")
        return pid

    def save(self, name, gz):
        path = os.path.join(self.collector.workdir, name)
        with open(path, "wb") as f:
            f.write(gz)
        return path

    def check_profile(self, path):
        raw = self.pprof.run("-symbolize=none", "-raw", path)
        # The four sample types, in profile.proto's order, and inuse_space the default.
        header = re.search(r"^Samples:\n(.*)$", raw, re.M)
        self.assertIsNotNone(header, raw[:2000])
        self.assertEqual(header.group(1).split(), SAMPLE_TYPES[:3] + [SAMPLE_TYPES[3] + "[dflt]"])
        self.assertRegex(raw, r"PeriodType: space bytes")
        # Mappings carry the executable with its build-id (hex, as in `file`).
        mappings = raw[raw.index("Mappings"):]
        demo_line = [l for l in mappings.splitlines() if l.rstrip().split(" ")[-2:-1] and
                     os.path.basename(DEMO) in l]
        self.assertTrue(demo_line, mappings)
        self.assertRegex(demo_line[0], r"\b[0-9a-f]{40}\b", "the demo's mapping has its GNU build-id")

        # inuse_space: once allocator frames are hidden the leaking function
        # holds the most bytes (flat), with its file:line known.
        top = self.pprof.run("-symbolize=none", "-top", "-sample_index=inuse_space",
                             "-hide=^(operator new|malloc|calloc|realloc|std::|__gnu_cxx::|heapwatch)",
                             path)
        rows = top_rows(top)
        self.assertTrue(rows, top)
        self.assertIn(LEAK, rows[0][1], top)
        lines = self.pprof.run("-symbolize=none", "-top", "-lines", "-sample_index=inuse_space",
                               "-hide=^(operator new|malloc|calloc|realloc|std::|__gnu_cxx::|heapwatch)",
                               path)
        first = top_rows(lines)[0][1]
        self.assertIn(LEAK, first, lines)
        self.assertRegex(first, r"demo_service\.cc:\d+", "file:line of the leaking call")
        # The other sample types are there with values (allocation counts too).
        for index in ("alloc_space", "alloc_objects", "inuse_objects"):
            out = self.pprof.run("-symbolize=none", "-top", f"-sample_index={index}", path)
            self.assertRegex(out, r"Showing nodes accounting for [\d.]+\w*, [\d.]+% of [1-9][\d.]*\w* total",
                             f"{index}: {out[:500]}")
        # Whole stacks, down to a thread's root: main's, or start_thread for the
        # demo's workers (main's own allocations are few and may go unsampled).
        traces = self.pprof.run("-symbolize=none", "-traces", path)
        self.assertRegex(traces, r"\n\s+(main|start_thread)\n")
        return raw

    def test_live_and_snapshot_profiles_read_by_go_pprof(self):
        pid = self.start_leaking_demo()
        status, headers, gz = self.collector.request(f"/debug/pprof/heap?pid={pid}")
        self.assertEqual(status, 200)
        self.assertEqual(gz[:2], b"\x1f\x8b", "gzipped")
        self.check_profile(self.save("live.pb.gz", gz))

        status, body = self.collector.post_json(f"/api/v1/snapshots?pid={pid}")
        self.assertEqual(status, 201, body)
        status, _, snap_gz = self.collector.request(f"/api/v1/snapshots/{body['id']}/pprof")
        self.assertEqual(status, 200)
        self.check_profile(self.save("snapshot.pb.gz", snap_gz))

    def test_profile_that_grows_between_requests_stays_one_valid_profile(self):
        # The collector keeps a profile's structure compressed between
        # requests and sends what grew as further gzip members: the real
        # pprof must read the whole of it after every growth.
        shim = FakeShim(self.collector.socket_path).send(hello(exe="/bin/growing"))
        self.addCleanup(shim.close)
        pid = os.getpid()
        allocated = 0
        for round_ in range(3):
            first = 1 + round_ * 50
            for sid in range(first, first + 50):
                # Each round brings program counters never seen before.
                shim.send(stack(sid, [0x7000 + sid * 16, 0x6000 + (sid % 7) * 16, 0x5000]))
            shim.send(events([(ALLOC, 0x100000 + sid * 64, 1000 + sid, sid)
                              for sid in range(first, first + 50)]))
            allocated += sum(1000 + sid for sid in range(first, first + 50))
            wait_until(lambda: any(p["pid"] == pid and p["counters"]["events"] == 50 * (round_ + 1)
                                   for p in self.collector.get_json("/api/v1/processes")["processes"]),
                       timeout=10, what="the round's events applied")
            status, _, gz = self.collector.request(f"/debug/pprof/heap?pid={pid}")
            self.assertEqual(status, 200)
            members, rest = 0, gz
            while rest:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                d.decompress(rest)
                self.assertTrue(d.eof, "a whole gzip member")
                rest = d.unused_data
                members += 1
            self.assertEqual(members, round_ + 2, "one member per growth plus the figures")
            raw = self.pprof.run("-symbolize=none", "-raw", self.save(f"grow{round_}.pb.gz", gz))
            samples = raw[raw.index("Samples:"):raw.index("Locations")]
            rows = [l for l in samples.splitlines()[2:] if l.strip()]
            self.assertEqual(len(rows), 50 * (round_ + 1), samples[:1000])
            # A row: the four values, then ": " and the location ids.
            self.assertEqual(sum(int(r.split(":")[0].split()[3]) for r in rows), allocated,
                             "inuse_space adds up")
            locations = raw[raw.index("Locations"):raw.index("Mappings") if "Mappings" in raw else None]
            self.assertIn(hex(0x7000 + (first + 49) * 16), locations, "the newest stack's own pc")

    def test_sample_index_default_follows_type(self):
        pid = self.start_leaking_demo()
        gz = self.collector.request(f"/debug/pprof/heap?pid={pid}&type=alloc_space")[2]
        out = self.pprof.run("-symbolize=none", "-top", self.save("alloc.pb.gz", gz))
        self.assertIn("Type: alloc_space", out)


if __name__ == "__main__":
    unittest.main()
