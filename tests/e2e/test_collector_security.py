"""Security of the real heapwatchd: socket permissions, loopback-only HTTP by
default, the bearer token, no file outside the UI folder ever served, the
request size limits, and a clean stop on SIGTERM."""
import http.client
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import unittest

import harness
from harness import DEMO, HEAPWATCHD, Collector, CollectorTestCase, HttpError, start_under_shim, wait_until

SECRET = "s3cret-token-for-e2e"
PASSWD_MARK = b"root:x:0:0"


def raw_get(port, target, headers=None):
    """GET with the target sent verbatim (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_host=False, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def listening_addresses(port, tcp_table="/proc/net/tcp"):
    """Local IPv4 addresses (hex, as in /proc/net/tcp) listening on `port`."""
    out = []
    for path in (tcp_table, tcp_table + "6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    addr, hexport = fields[1].split(":")
                    if int(hexport, 16) == port and fields[3] == "0A":
                        out.append(addr)
        except FileNotFoundError:
            pass
    return out


class CollectorSocketTest(unittest.TestCase):
    def start(self, *args):
        c = Collector(args=args).start()
        self.addCleanup(c.cleanup)
        return c

    def test_socket_mode_default_and_flag(self):
        c = self.start()
        st = os.stat(c.socket_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        c2 = self.start("--socket-mode", "0600")
        self.assertEqual(stat.S_IMODE(os.stat(c2.socket_path).st_mode), 0o600)

    def test_second_collector_on_a_live_socket_refuses(self):
        c = self.start()
        other = subprocess.run([HEAPWATCHD, "--socket", c.socket_path, "--http", "127.0.0.1:0",
                                "--data-dir", os.path.join(c.workdir, "d2")],
                               capture_output=True, text=True, timeout=30)
        self.assertNotEqual(other.returncode, 0)
        self.assertIn("another collector", other.stdout + other.stderr)
        self.assertEqual(c.request("/healthz")[0], 200, "the first one is unharmed")

    def test_sigterm_stops_cleanly_with_a_shim_attached(self):
        c = self.start()
        demo = start_under_shim([DEMO, "--threads", "1", "--rps", "100"], c)
        self.addCleanup(lambda: (demo.kill(), demo.wait()))
        c.wait_for_process(demo.pid, lambda p: p["connected"])
        self.assertEqual(c.stop(), 0, c.log()[-2000:])
        self.assertFalse(os.path.exists(c.socket_path), "socket file removed on stop")
        self.assertIn("stopping", c.log())
        time.sleep(0.5)
        self.assertIsNone(demo.poll(), "the application keeps running without its collector")

    def test_http_binds_loopback_by_default(self):
        # No --http at all: the built-in default, 127.0.0.1:7070 (0x1B9E), run
        # in a private network namespace so that port 7070 is ours.
        if os.getuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
            self.skipTest("needs root, unshare and ip for the default-address check")
        d = tempfile.mkdtemp(prefix="hw-netns-")
        self.addCleanup(shutil.rmtree, d, True)
        script = ("ip link set lo up && { \"$0\" --socket \"$1/s.sock\" --data-dir \"$1/data\" & "
                  "pid=$!; for i in $(seq 100); do [ -S \"$1/s.sock\" ] && break; sleep 0.1; done; "
                  "sleep 0.3; cat /proc/net/tcp /proc/net/tcp6; kill -TERM $pid; wait $pid; }")
        r = subprocess.run(["unshare", "--net", "sh", "-c", script, HEAPWATCHD, d],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [line.split() for line in r.stdout.splitlines() if ":" in line]
        listening = [f[1] for f in rows if len(f) > 3 and f[3] == "0A" and f[1].endswith(":1B9E")]
        self.assertEqual(listening, ["0100007F:1B9E"], r.stdout)
        # And the harness's explicit loopback address is the only one bound.
        c = self.start()
        self.assertEqual(listening_addresses(c.port), ["0100007F"])


class CollectorTokenTest(CollectorTestCase):
    @classmethod
    def setUpClass(cls):
        cls.token_dir = tempfile.mkdtemp(prefix="hw-token-")
        path = os.path.join(cls.token_dir, "token")
        with open(path, "w") as f:
            f.write(SECRET + "\n")
        cls.collector_args = ("--token-file", path)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.token_dir, ignore_errors=True)

    def status(self, path, **kw):
        try:
            return self.collector.request(path, token=kw.pop("token", ""), **kw)[0]
        except HttpError as e:
            return e.code

    def test_token_guards_everything_but_health(self):
        self.assertEqual(self.status("/healthz"), 200)
        self.assertEqual(self.status("/readyz"), 200)
        guarded = ["/", "/index.html", "/app.js", "/metrics", "/api/v1/processes", "/api/v1/alerts",
                   "/api/v1/snapshots", "/debug/pprof/heap?pid=1", "/api/v1/profile?pid=1",
                   "/api/v1/snapshots/nope", "/no-such-file"]
        for path in guarded:
            with self.subTest(path=path):
                self.assertEqual(self.status(path), 401)
                self.assertEqual(self.status(path, token="wrong"), 401)
                self.assertEqual(self.status(path, token=SECRET + "x"), 401)
        self.assertEqual(self.status("/api/v1/snapshots?pid=1", method="POST", body=b"{}"), 401)
        for path in ("/", "/metrics", "/api/v1/processes", "/api/v1/alerts", "/api/v1/snapshots"):
            with self.subTest(path=path, token="right"):
                self.assertEqual(self.status(path, token=SECRET), 200)
        status, headers, _ = raw_get(self.collector.port, "/metrics")
        self.assertEqual(status, 401)
        self.assertIn("Bearer", headers.get("WWW-Authenticate", ""))

    def test_token_query_sets_a_cookie_for_the_browser(self):
        status, headers, body = raw_get(self.collector.port, f"/?token={SECRET}")
        self.assertEqual(status, 200)
        cookie = headers.get("Set-Cookie", "")
        self.assertIn(f"heapwatch_token={SECRET}", cookie)
        self.assertIn("HttpOnly", cookie)
        status, _, _ = raw_get(self.collector.port, "/api/v1/processes",
                               {"Cookie": f"other=1; heapwatch_token={SECRET}"})
        self.assertEqual(status, 200)
        status, headers, _ = raw_get(self.collector.port, "/?token=wrong")
        self.assertEqual(status, 401)
        self.assertNotIn("Set-Cookie", headers)
        status, _, _ = raw_get(self.collector.port, "/api/v1/processes", {"Cookie": "heapwatch_token=wrong"})
        self.assertEqual(status, 401)


class CollectorFilesTest(unittest.TestCase):
    """A UI folder with symlinks pointing out of it, and a secret beside it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hw-ui-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ui = os.path.join(self.dir, "ui")
        shutil.copytree(harness.UI_DIR, self.ui)
        with open(os.path.join(self.dir, "secret.txt"), "w") as f:
            f.write("TOP-SECRET\n")
        os.symlink("/etc/passwd", os.path.join(self.ui, "passwd.js"))
        os.symlink("../secret.txt", os.path.join(self.ui, "secret.css"))
        os.symlink("/", os.path.join(self.ui, "root"))
        os.symlink("index.html", os.path.join(self.ui, "alias.html"))  # inside: fine
        os.makedirs(os.path.join(self.dir, "c"))
        saved, harness.UI_DIR = harness.UI_DIR, self.ui
        try:
            self.collector = Collector(workdir=os.path.join(self.dir, "c")).start()
        finally:
            harness.UI_DIR = saved
        self.addCleanup(self.collector.cleanup)

    def test_nothing_outside_the_ui_folder_is_served(self):
        port = self.collector.port
        self.assertEqual(raw_get(port, "/")[0], 200)
        self.assertEqual(raw_get(port, "/alias.html")[0], 200, "a symlink inside the folder is fine")
        attempts = [
            "/../../../../etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/.%2e/.%2e/.%2e/etc/passwd",
            "/%252e%252e/%252e%252e/etc/passwd", "//etc/passwd", "/index.html/../../../etc/passwd",
            "/..\\..\\..\\etc\\passwd", "/%5c..%5c..%5cetc%5cpasswd", "/passwd.js", "/secret.css",
            "/root/etc/passwd", "/root/proc/self/environ", "/%2e%2e/secret.txt", "/../secret.txt",
            "/ui/../secret.txt", "/index.html%00.js", "/.", "/%2e", "/%2e%2e",
            "/" + "%2e%2e/" * 40 + "etc/passwd",
        ]
        for target in attempts:
            with self.subTest(target=target):
                status, _, body = raw_get(port, target)
                self.assertIn(status, (400, 404), body[:200])
                self.assertNotIn(PASSWD_MARK, body)
                self.assertNotIn(b"TOP-SECRET", body)
        # Also through a client that does its own path handling (curl).
        if shutil.which("curl"):
            r = subprocess.run(["curl", "-s", "--path-as-is", f"http://127.0.0.1:{port}/../../etc/passwd"],
                               capture_output=True, timeout=20)
            self.assertNotIn(PASSWD_MARK, r.stdout)
        self.assertEqual(raw_get(port, "/healthz")[0], 200)


class CollectorLimitsTest(CollectorTestCase):
    def send_raw(self, data, read=True):
        s = socket.create_connection(("127.0.0.1", self.collector.port), timeout=10)
        try:
            try:
                for i in range(0, len(data), 65536):
                    s.sendall(data[i:i + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before reading it all
            chunks = []
            while read:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            s.close()

    def status_of(self, response):
        self.assertTrue(response.startswith(b"HTTP/1.1 "), response[:200])
        return int(response.split()[1])

    def test_request_body_and_header_limits(self):
        body = b"x" * (2 << 20)
        req = (b"POST /api/v1/snapshots?pid=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
        self.assertIn(self.status_of(self.send_raw(req)), (400, 413))
        # Announced but never sent: refused from the header alone.
        req = (b"POST /api/v1/snapshots?pid=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
               b"Connection: close\r\n\r\n")
        self.assertIn(self.status_of(self.send_raw(req)), (400, 413))
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 << 10) + b"\r\n\r\n"
        self.assertIn(self.status_of(self.send_raw(req)), (400, 431))
        self.assertEqual(self.status_of(self.send_raw(b"BLAH\r\n\r\n")), 400)
        # Bad parameters are 400s with a message, not crashes.
        for path in ("/api/v1/profile?pid=abc", "/api/v1/profile?pid=1&type=bogus",
                     "/api/v1/profile", "/debug/pprof/heap?pid=-1", "/api/v1/snapshots/..%2f..%2fetc"):
            with self.subTest(path=path):
                try:
                    self.collector.request(path)
                    self.fail("accepted")
                except HttpError as e:
                    self.assertIn(e.code, (400, 404))
                    self.assertIn(b'"error"', e.body)
        self.assertEqual(self.collector.request("/healthz")[0], 200)
        self.assertIsNone(self.collector.proc.poll())


if __name__ == "__main__":
    unittest.main()
