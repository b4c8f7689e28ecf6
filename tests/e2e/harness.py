"""Shared plumbing for heapwatch's end-to-end tests.

Starts a real heapwatchd on a private Unix socket and a free loopback port,
runs real programs under the real shim, and talks to the collector over HTTP.
Standard library only. Paths come from the environment CTest sets
(tests/CMakeLists.txt); run a test by hand with `ctest -R e2e_NAME -V`.
"""
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HEAPWATCHD = os.environ.get("HEAPWATCHD", "")
SHIM = os.environ.get("HEAPWATCH_SHIM", "")
DEMO = os.environ.get("HEAPWATCH_DEMO", "")
PROGRAMS = os.environ.get("HEAPWATCH_PROGRAMS", "")
BUILD_DIR = os.environ.get("HEAPWATCH_BUILD_DIR", "")
SOURCE_DIR = os.environ.get("HEAPWATCH_SOURCE_DIR", "")
UI_DIR = os.environ.get("HEAPWATCH_UI_DIR", "")


def wait_until(predicate, timeout=20.0, interval=0.1, what="condition"):
    """Polls predicate() until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


def walk_tree(node):
    """Every node of a call tree (/api/v1/profile's "root"), depth-first."""
    yield node
    for child in node.get("children", []):
        yield from walk_tree(child)


def find_path(node, match, path=()):
    """Depth-first search of a call tree. `match` is a predicate on a node or
    a substring of its name. Returns (node, nodes from the root to it) or None."""
    if isinstance(match, str):
        text = match
        match = lambda n: text in n.get("name", "")  # noqa: E731
    path = path + (node,)
    if match(node):
        return node, path
    for child in node.get("children", []):
        found = find_path(child, match, path)
        if found:
            return found
    return None


def find_node(node, match):
    """The first node find_path finds, or None."""
    found = find_path(node, match)
    return found[0] if found else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpError(Exception):
    def __init__(self, code, body):
        super().__init__(f"HTTP {code}: {body[:300]!r}")
        self.code = code
        self.body = body


class Collector:
    """A heapwatchd process on a temporary socket, port and data directory."""

    def __init__(self, workdir=None, args=(), env=None, token=None, data_dir=None):
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="heapwatch-e2e-")
        self.socket_path = os.path.join(self.workdir, "heapwatch.sock")
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        self.port = None
        self.args = list(args)
        self.env = dict(env or {})
        self.token = token
        self.proc = None
        self.log_path = os.path.join(self.workdir, "heapwatchd.log")

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=20.0):
        self.port = self.port or free_port()
        cmd = [HEAPWATCHD, "--socket", self.socket_path,
               "--http", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
               "--ui-dir", UI_DIR] + self.args
        env = dict(os.environ)
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_until(self._ready, timeout, what=f"heapwatchd ready ({self.log()[-500:]})")
        return self

    # The endpoint that must answer 200 before start() returns.
    ready_path = "/readyz"

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"heapwatchd exited with {self.proc.returncode}: {self.log()}")
        try:
            return self.request(self.ready_path)[0] == 200
        except (OSError, HttpError):
            return False

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def request(self, path, method="GET", body=None, headers=None, timeout=10.0,
                token=None):
        """Returns (status, headers, body bytes); raises HttpError on >= 400."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        tok = token if token is not None else self.token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            raise HttpError(e.code, e.read()) from None

    def get_json(self, path, **kw):
        status, _, body = self.request(path, **kw)
        return json.loads(body)

    def post_json(self, path, payload=None, **kw):
        data = json.dumps(payload or {}).encode()
        status, _, body = self.request(path, method="POST", body=data,
                                       headers={"Content-Type": "application/json"}, **kw)
        return status, json.loads(body)

    def get_pprof(self, pid, path="/debug/pprof/heap"):
        status, headers, body = self.request(f"{path}?pid={pid}")
        return gzip.decompress(body)

    def process(self, pid):
        for p in self.get_json("/api/v1/processes")["processes"]:
            if p["pid"] == pid:
                return p
        return None

    def wait_for_process(self, pid, predicate=lambda p: True, timeout=20.0):
        return wait_until(lambda: (lambda p: p if p and predicate(p) else None)(self.process(pid)),
                          timeout, what=f"process {pid} in /api/v1/processes")

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stops the collector; returns its exit code."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("heapwatchd did not stop on SIGTERM")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if getattr(self, "_log", None):
            self._log.close()
        if self._own_dir and not os.environ.get("HEAPWATCH_KEEP_TMP"):
            shutil.rmtree(self.workdir, ignore_errors=True)


def shim_env(collector=None, socket_path=None, **overrides):
    """Environment for a program under the shim, talking to `collector`."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = SHIM
    env["HEAPWATCH_SOCKET"] = socket_path or collector.socket_path
    for k, v in overrides.items():
        env[k if k.startswith("HEAPWATCH_") or k == "LD_PRELOAD" else "HEAPWATCH_" + k] = str(v)
    return env


def start_under_shim(cmd, collector=None, **kw):
    """Starts cmd under the shim; keyword args become HEAPWATCH_* variables."""
    stdout = kw.pop("stdout", subprocess.DEVNULL)
    stderr = kw.pop("stderr", subprocess.PIPE)
    return subprocess.Popen(cmd, env=shim_env(collector, **kw), stdout=stdout, stderr=stderr)


class CollectorTestCase(unittest.TestCase):
    """Gives each test a fresh collector in self.collector."""

    collector_args = ()
    collector_env = None

    def setUp(self):
        for path, what in ((HEAPWATCHD, "HEAPWATCHD"), (SHIM, "HEAPWATCH_SHIM")):
            if not path or not os.path.exists(path):
                self.fail(f"{what} not set or missing ({path!r}); run through ctest")
        self.collector = Collector(args=self.collector_args, env=self.collector_env).start()
        self.addCleanup(self.collector.cleanup)
        self._children = []
        self.addCleanup(self._reap)

    def spawn(self, cmd, **kw):
        p = start_under_shim(cmd, self.collector, **kw)
        self._children.append(p)
        return p

    def _reap(self):
        for p in self._children:
            if p.poll() is None:
                p.kill()
                p.wait()
