"""/metrics through the real `promtool check metrics` (Debian's prometheus):
no complaints, the documented names present (docs/api.md), values that agree
with the API and with /proc."""
import os
import shutil
import subprocess
import unittest

from harness import DEMO, CollectorTestCase, wait_until
from test_collector_support import ALLOC, FakeShim, events, hello, parse_metrics, rss_bytes, stack

PER_PROCESS = ["heapwatch_heap_bytes", "heapwatch_heap_objects", "heapwatch_rss_bytes",
               "heapwatch_memory_limit_bytes", "heapwatch_growth_bytes_per_second",
               "heapwatch_live_samples", "heapwatch_dropped_events_total",
               "heapwatch_leak_suspect_bytes_per_second"]
COLLECTOR = ["heapwatch_ingest_errors_total", "heapwatch_ingest_frames_total",
             "heapwatch_evictions_total", "heapwatch_collector_rss_bytes",
             "heapwatch_collector_cpu_seconds_total", "heapwatch_http_requests_total",
             "heapwatch_alerts_firing"]


class CollectorMetricsTest(CollectorTestCase):
    collector_args = ("--memory-limit", "256Mi", "--poll-interval", "0.2")

    def promtool(self, text):
        tool = shutil.which("promtool")
        self.assertIsNotNone(tool, "promtool not found: install Debian's prometheus")
        r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=60)
        return r.returncode, (r.stdout + r.stderr).strip()

    def test_promtool_clean_and_documented_names_with_sane_values(self):
        # An idle collector first: collector metrics alone must be clean too.
        rc, out = self.promtool(self.collector.request("/metrics")[2].decode())
        self.assertEqual((rc, out), (0, ""), "promtool on an idle collector")

        demo = self.spawn([DEMO, "--threads", "2", "--rps", "300", "--leak-bytes", "8192"],
                          SAMPLE_BYTES=65536)
        # Wait for twice what is asserted below: the demo's churn moves the
        # estimate between the API read and the /metrics read (CI once saw
        # 0.92 MiB right after the API had shown more than 1 MiB).
        self.collector.wait_for_process(demo.pid, lambda p: p["heap_bytes"] > 2 << 20
                                        and p["rss_bytes"])
        status, headers, body = self.collector.request("/metrics")
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers)
        text = body.decode()
        rc, out = self.promtool(text)
        self.assertEqual((rc, out), (0, ""), "promtool check metrics: zero complaints")

        m = parse_metrics(text)
        for name in PER_PROCESS + COLLECTOR:
            self.assertIn(name, m, f"documented metric {name} missing")
        labels = {"pid": str(demo.pid)}

        def value(name, **extra):
            want = dict(labels, **extra) if name in PER_PROCESS else extra
            hits = [v for l, v in m[name] if all(l.get(k) == x for k, x in want.items())]
            self.assertEqual(len(hits), 1, f"{name}{want}: {m[name]}")
            return hits[0]

        exe = [l["exe"] for l, _ in m["heapwatch_heap_bytes"] if l["pid"] == str(demo.pid)][0]
        self.assertTrue(exe.endswith("heapwatch_demo") or "demo" in exe, exe)
        self.assertGreater(value("heapwatch_heap_bytes"), 1 << 20)
        self.assertGreater(value("heapwatch_heap_objects"), 0)
        self.assertEqual(value("heapwatch_memory_limit_bytes"), 256 << 20)
        # RSS as the poller read it: the demo's resident set, within what /proc
        # says now and the heap estimate's scale.
        rss = value("heapwatch_rss_bytes")
        self.assertGreater(rss, 1 << 20)
        self.assertLess(rss, 4 * max(rss_bytes(demo.pid), 1 << 20))
        self.assertGreater(value("heapwatch_live_samples"), 0)
        self.assertEqual(value("heapwatch_dropped_events_total"), 0)
        self.assertGreaterEqual(value("heapwatch_growth_bytes_per_second"), 0)
        self.assertGreaterEqual(value("heapwatch_leak_suspect_bytes_per_second"), 0)
        # Collector's own figures.
        self.assertGreater(value("heapwatch_ingest_frames_total"), 0)
        self.assertEqual(value("heapwatch_ingest_errors_total", reason="bad_magic"), 0)
        self.assertEqual(value("heapwatch_evictions_total", table="stacks"), 0)
        own = value("heapwatch_collector_rss_bytes")
        self.assertGreater(own, 1 << 20)
        self.assertLess(own, 2 * rss_bytes(self.collector.proc.pid) + (8 << 20))
        self.assertGreater(value("heapwatch_collector_cpu_seconds_total"), 0)
        self.assertGreaterEqual(value("heapwatch_http_requests_total", code="200"), 2)
        self.assertEqual(sum(v for _, v in m["heapwatch_alerts_firing"]), 0)

        # The per-process figures agree with the API's.
        api = self.collector.process(demo.pid)
        self.assertEqual(api["live_samples"] > 0, value("heapwatch_live_samples") > 0)

        # Counters only go up between scrapes.
        frames = value("heapwatch_ingest_frames_total")
        wait_until(lambda: parse_metrics(self.collector.request("/metrics")[2].decode())
                   ["heapwatch_ingest_frames_total"][0][1] > frames, what="frames counter rising")

    def test_exited_process_and_label_escaping_stay_valid(self):
        # An exe path with a quote, a backslash and a newline in the hello
        # (a client may claim any name): the exposition must stay parseable.
        shim = FakeShim(self.collector.socket_path)
        shim.send(hello(exe='/tmp/we"ird\\na\nme') + stack(7, [0x1000, 0x2000])
                  + events([(ALLOC, 0x10, 1000, 7)]))
        self.collector.wait_for_process(os.getpid(), lambda p: p["heap_bytes"] >= 1000)
        shim.close()
        rc, out = self.promtool(self.collector.request("/metrics")[2].decode())
        self.assertEqual((rc, out), (0, ""))


if __name__ == "__main__":
    unittest.main()
