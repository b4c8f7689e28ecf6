"""Growth, leak suspects, alerts and evidence in a real memory-limited cgroup.

A demo service that leaks under the real shim runs in a 128 MiB cgroup until
the kernel OOM-kills it; heapwatchd must have fired an alert before that,
named SessionStore::RememberSession as the top suspect, and written a snapshot
that is still readable after the collector restarts. A service with churn, a
plateauing cache and a sawtooth runs to its end in the same limit with no
alert. Needs root and a memory cgroup hierarchy; skips with the reason
otherwise.
"""
import json
import os
import time
import unittest

from harness import DEMO, SHIM, Collector, CollectorTestCase
from cgroup_util import MemoryCgroup

LIMIT = 128 << 20
# Short for/analysis periods keep the test quick; thresholds are the defaults.
COLLECTOR_ARGS = ("--poll-interval", "0.5", "--alert-for-seconds", "5", "--alert-resolve-seconds", "10")
UNAVAILABLE = MemoryCgroup.unavailable_reason()


def shim_vars(collector):
    return {"LD_PRELOAD": SHIM, "HEAPWATCH_SOCKET": collector.socket_path}


@unittest.skipIf(UNAVAILABLE, UNAVAILABLE or "")
class OomTest(CollectorTestCase):
    collector_args = COLLECTOR_ARGS

    def run_in_cgroup(self, args):
        cg = MemoryCgroup(LIMIT)
        self.addCleanup(cg.remove)
        proc = cg.popen([DEMO] + args, env=shim_vars(self.collector),
                        stdout=open(os.devnull, "wb"), stderr=open(os.devnull, "wb"))
        self._children.append(proc)
        return cg, proc

    def alerts_for(self, pid):
        return [a for a in self.collector.get_json("/api/v1/alerts")["alerts"] if a["pid"] == pid]

    def test_leak_is_alerted_named_and_saved_before_the_oom_kill(self):
        # 4 KiB per request at 1000 requests/s: ~4 MB/s into 128 MiB.
        cg, demo = self.run_in_cgroup(["--threads", "2", "--rps", "1000", "--leak-bytes", "4096"])
        proc = self.collector.wait_for_process(demo.pid, lambda p: p["limit_bytes"] is not None)
        # The cgroup's limit and usage were read (v1 here: memory.limit_in_bytes).
        self.assertEqual(proc["limit_bytes"], LIMIT)
        self.assertIsNotNone(proc["cgroup_usage_bytes"])

        rc = demo.wait(180)
        self.assertEqual(rc, -9, f"demo should be SIGKILLed by the kernel, exited with {rc}")
        kills = cg.oom_kills()
        if kills is not None:
            self.assertGreaterEqual(kills, 1, "the cgroup reports no OOM kill")
        self.collector.wait_for_process(demo.pid, lambda p: p["state"] == "exited")

        alerts = self.alerts_for(demo.pid)
        fired = [a for a in alerts if a["started_at"] is not None]
        self.assertTrue(fired, f"no alert fired before the kill: {alerts}\n{self.collector.log()[-3000:]}")
        first = min(fired, key=lambda a: a["started_at"])
        self.assertIn(first["rule"], ("time_to_oom", "leak_suspect"))
        # It resolved because the process died, not because the condition went away.
        self.assertEqual(first["state"], "resolved")
        self.assertEqual(first["resolution"], "process exited")
        self.assertIn("RememberSession", first["function"] or "", first)
        self.assertIsNotNone(first["snapshot"], first)

        # The snapshot was written when the alert fired, while the process lived
        # and with most of the limit still free: "well before" the kill, in bytes.
        snap = self.collector.get_json(f"/api/v1/snapshots/{first['snapshot']}")
        self.assertEqual(snap["pid"], demo.pid)
        self.assertTrue(snap["reason"].startswith("alert:"), snap["reason"])
        self.assertEqual(snap["process"]["state"], "running")
        usage_at_alert = [p["cgroup_bytes"] for p in snap["timeline"]["points"] if p["cgroup_bytes"]][-1]
        self.assertLess(usage_at_alert, 0.75 * LIMIT,
                        f"alert fired only at {usage_at_alert / LIMIT:.0%} of the limit")
        top = snap["leaks"]["suspects"][0]
        self.assertIn("RememberSession", top["function"])
        self.assertTrue(top["file"].endswith("demo_service.cc"), top)
        self.assertGreater(top["share_of_growth"], 0.5)
        self.assertGreater(top["growth_bytes_per_sec"], 1 << 20)
        self.assertGreater(top["oldest_age_sec"], top["median_age_sec"])
        # Rules that fire in the same poll share one snapshot, which names the
        # alert that took it: one of those.
        self.assertIn(snap["alert"]["id"], [a["id"] for a in fired if a["snapshot"] == first["snapshot"]])
        self.assertIsNotNone(snap["timeline"]["prediction"])

        # On disk, complete, and readable by a new collector on the same data dir.
        sid = first["snapshot"]
        sdir = os.path.join(self.collector.data_dir, "snapshots")
        self.assertTrue(os.path.isfile(os.path.join(sdir, sid + ".json")))
        self.assertTrue(os.path.isfile(os.path.join(sdir, sid + ".pb.gz")))
        self.collector.stop()
        again = Collector(args=COLLECTOR_ARGS, data_dir=self.collector.data_dir).start()
        self.addCleanup(again.cleanup)
        self.assertIn(sid, [s["id"] for s in again.get_json("/api/v1/snapshots")["snapshots"]])
        reread = again.get_json(f"/api/v1/snapshots/{sid}")
        self.assertEqual(reread["leaks"]["suspects"][0]["function"], top["function"])
        status, headers, body = again.request(f"/api/v1/snapshots/{sid}/pprof")
        self.assertEqual(body[:2], b"\x1f\x8b")  # gzip

    def test_churn_plateauing_cache_and_sawtooth_run_to_the_end_without_alert(self):
        # Churn on every request, a 4000-entry cache that fills and plateaus,
        # and a batch buffer of 2 KB per request flushed every 3 s. The cache
        # is full after 4 s at 1000 requests/s, 16 s on a loaded machine at a
        # quarter of that: a plateau for most of the run either way (a cache
        # still filling at the end of the run would rightly look like a leak;
        # an 8000-entry cache was, once, in a CI run sharing the machine with
        # two callgrind runs: ~360 entries/s still arriving 20-40 s in).
        cg, demo = self.run_in_cgroup(["--threads", "2", "--rps", "1000", "--seconds", "40",
                                       "--cache-entries", "4000", "--sawtooth-bytes", "2048"])
        self.collector.wait_for_process(demo.pid, lambda p: p["limit_bytes"] == LIMIT)
        peak = 0
        # Poll until it ends, watching what an operator would see.
        while demo.poll() is None:
            for a in self.alerts_for(demo.pid):
                self.assertEqual(a["state"], "pending", f"false alarm: {json.dumps(a)}")
            try:
                peak = max(peak, cg.usage())
            except OSError:
                pass
            time.sleep(1)
        self.assertEqual(demo.returncode, 0, "the non-leaking service should run to its end")
        self.assertLess(peak, LIMIT)
        fired = [a for a in self.alerts_for(demo.pid) if a["started_at"] is not None]
        self.assertEqual(fired, [], "false alarm")
        # The analysis ran (a trend was fitted) and no suspect looks like a leak.
        leaks = self.collector.get_json(f"/api/v1/leaks?pid={demo.pid}")
        self.assertEqual(leaks["limit_bytes"], LIMIT)
        for s in leaks["suspects"]:
            self.assertLess(s["score"] * (s["growth_bytes_per_sec"] >= 65536), 0.6, s)


if __name__ == "__main__":
    unittest.main()
