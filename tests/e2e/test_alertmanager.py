"""Alert delivery to a real Alertmanager (Debian's prometheus-alertmanager) and
to a JSON webhook: a leaking demo in a memory-limited cgroup makes heapwatchd
fire; Alertmanager lists the alert with heapwatch's labels and annotations
(re-sent while firing); when the process goes, the resolution reaches both
sinks. Skips when there is no Alertmanager binary or no cgroup can be made."""
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest
import urllib.request

from harness import DEMO, SHIM, CollectorTestCase, free_port, wait_until
from cgroup_util import MemoryCgroup

ALERTMANAGER = os.environ.get("HEAPWATCH_ALERTMANAGER", shutil.which("prometheus-alertmanager")
                              or "/usr/bin/prometheus-alertmanager")
CGROUP_UNAVAILABLE = MemoryCgroup.unavailable_reason()
AM_PORT = free_port()
HOOK_PORT = free_port()


class Hook(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Hook.received.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@unittest.skipIf(not os.access(ALERTMANAGER, os.X_OK), f"no Alertmanager binary at {ALERTMANAGER}")
@unittest.skipIf(CGROUP_UNAVAILABLE, CGROUP_UNAVAILABLE or "")
class AlertmanagerTest(CollectorTestCase):
    collector_args = ("--poll-interval", "0.5", "--alert-for-seconds", "3",
                      "--alertmanager-url", f"http://127.0.0.1:{AM_PORT}",
                      "--webhook-url", f"http://127.0.0.1:{HOOK_PORT}/hooks/heapwatch",
                      "--alert-resend-seconds", "2")

    def setUp(self):
        self.am_dir = tempfile.mkdtemp(prefix="heapwatch-am-")
        self.addCleanup(shutil.rmtree, self.am_dir, True)
        config = os.path.join(self.am_dir, "alertmanager.yml")
        with open(config, "w") as f:
            f.write("route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n")
        self.am_log = open(os.path.join(self.am_dir, "alertmanager.log"), "wb")
        self.addCleanup(self.am_log.close)
        self.am = subprocess.Popen([ALERTMANAGER, f"--config.file={config}",
                                    f"--storage.path={self.am_dir}/data",
                                    f"--web.listen-address=127.0.0.1:{AM_PORT}",
                                    "--cluster.listen-address="],
                                   stdout=self.am_log, stderr=subprocess.STDOUT)
        self.addCleanup(self._stop_am)
        wait_until(lambda: self._am_get("/-/ready") is not None, 30, what="Alertmanager ready")

        Hook.received = []
        self.hook = http.server.HTTPServer(("127.0.0.1", HOOK_PORT), Hook)
        threading.Thread(target=self.hook.serve_forever, daemon=True).start()
        self.addCleanup(self.hook.server_close)
        self.addCleanup(self.hook.shutdown)
        super().setUp()

    def _stop_am(self):
        if self.am.poll() is None:
            self.am.terminate()
            try:
                self.am.wait(10)
            except subprocess.TimeoutExpired:
                self.am.kill()
                self.am.wait()

    def _am_get(self, path):
        if self.am.poll() is not None:
            raise AssertionError(f"Alertmanager exited: {open(self.am_log.name).read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{AM_PORT}{path}", timeout=5) as r:
                return r.read()
        except (OSError, socket.timeout):
            return None

    def am_alerts(self, pid):
        body = self._am_get("/api/v2/alerts")
        alerts = json.loads(body) if body else []
        return [a for a in alerts if a["labels"].get("pid") == str(pid)]

    def test_alert_reaches_alertmanager_and_webhook_and_resolves(self):
        cg = MemoryCgroup(256 << 20)
        self.addCleanup(cg.remove)
        # ~2 MB/s into 256 MiB: a couple of minutes to the kill, plenty of time.
        demo = cg.popen([DEMO, "--threads", "2", "--rps", "500", "--leak-bytes", "4096"],
                        env={"LD_PRELOAD": SHIM, "HEAPWATCH_SOCKET": self.collector.socket_path},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._children.append(demo)

        found = wait_until(lambda: self.am_alerts(demo.pid), 90,
                           what=f"heapwatch alert in Alertmanager ({self.collector.log()[-1500:]})")
        alert = found[0]
        self.assertIn(alert["labels"]["alertname"], ("HeapwatchOOMPredicted", "HeapwatchLeakSuspect"))
        self.assertEqual(alert["labels"]["job"], "heapwatch")
        self.assertTrue(alert["labels"]["exe"].endswith("heapwatch-demo"))
        self.assertIn(alert["status"]["state"], ("active", "unprocessed"))
        self.assertIn("summary", alert["annotations"])
        self.assertTrue(alert["annotations"].get("snapshot"), alert)
        self.assertIn("/api/v1/alerts", alert["generatorURL"])

        # Re-sent while firing: Alertmanager's updatedAt moves on.
        first_update = alert["updatedAt"]
        wait_until(lambda: any(a["updatedAt"] != first_update for a in self.am_alerts(demo.pid)), 30,
                   what="the firing alert re-sent")

        # The webhook got the same alert as JSON.
        firing = wait_until(lambda: [r for r in Hook.received if r[2]["status"] == "firing"], 20,
                            what="webhook firing POST")
        path, ctype, payload = firing[0]
        self.assertEqual(path, "/hooks/heapwatch")
        self.assertEqual(ctype, "application/json")
        self.assertEqual(payload["source"], "heapwatch")
        self.assertEqual(payload["alert"]["pid"], demo.pid)
        self.assertIn("RememberSession", payload["alert"]["function"] or "")

        # The process goes away: the alert resolves in both places.
        demo.kill()
        demo.wait()
        wait_until(lambda: [r for r in Hook.received if r[2]["status"] == "resolved"], 30,
                   what="webhook resolved POST")
        wait_until(lambda: not self.am_alerts(demo.pid), 30, what="alert resolved in Alertmanager")
        metrics = self.collector.request("/metrics")[2].decode()
        self.assertIn('heapwatch_alert_notifications_total{sink="alertmanager",outcome="sent"}', metrics)


if __name__ == "__main__":
    unittest.main()
