"""Helpers for the shim's end-to-end tests (no tests in this module).

WireReceiver is a tiny stand-in collector: it accepts the shim's Unix socket
connections and decodes the frames of wire.h with `struct`, checking the
protocol rules as it goes (Hello first, stacks before the events that name
them, resync markers paired and counted). Each connection keeps the live set
the way the collector must: a resync replaces it, an alloc of a live address
replaces the entry, a free of an unknown address is ignored.
"""
import itertools
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import PROGRAMS, SHIM, wait_until  # noqa: F401 (re-exported)

HELLO = struct.Struct("<IHHIIQQII")
MODULE = struct.Struct("<QQQQHHI")
STACK = struct.Struct("<QII")
EVENT = struct.Struct("<IIQQQQ")
MARKER = struct.Struct("<QQ")
STATS_FIELDS = ("sampled_allocs", "sampled_frees", "dropped_events", "table_full",
                "unwind_failures", "reconnects", "live_samples", "bytes_sent")
STATS = struct.Struct("<8Q")
MAGIC = 0x31505748
FRAME_NAMES = {1: "hello", 2: "modules_reset", 3: "module", 4: "stack", 5: "events",
               6: "resync_begin", 7: "resync_end", 8: "stats"}

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4"


def program(name):
    return os.path.join(PROGRAMS, name)


# shim_api_edge's marker allocations (SHIM_MARKERS=1): one per entry point,
# marker k of size MARKER_BASE + k, except aligned_alloc's and aligned new's
# (multiples of their alignments). All are freed but KEPT.
MARKER_BASE = 1000000
MARKERS = {MARKER_BASE + k for k in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14, 64, 192)}
KEPT = MARKER_BASE + 14


class ShimSocketTest(unittest.TestCase):
    """A test of the shim without a collector: self.dir, a temporary folder
    removed afterwards, and self.sock, a socket path in it for a
    WireReceiver."""

    def setUp(self):
        self.assertTrue(SHIM and os.path.exists(SHIM), "HEAPWATCH_SHIM not set; run through ctest")
        self.dir = tempfile.mkdtemp(prefix="hw-shim-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.sock = os.path.join(self.dir, "hw.sock")

    def record_run(self, cmd, preload, base, **env):
        """Runs cmd at R = 1 under `preload`, sending to a WireReceiver; it
        must behave as `base`, the same run without the shim. Returns the
        program's closed connection, which must have no protocol errors and
        no dropped events."""
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        # A ring big enough that a slow Python receiver never makes it drop.
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1, HEAPWATCH_RING_SLOTS=1 << 20, **env),
                preload=preload)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (base.returncode, base.stdout, base.stderr))
        name = os.path.basename(cmd[0])
        conn = wait_until(lambda: [c for c in rx.snapshot() if c.closed and c.hello and
                                   c.exe.endswith(name) and c.hello["ppid"] == os.getpid()],
                          what="the program's connection closed")[0]
        rx.stop()
        self.assertEqual(conn.errors, [])
        self.assertEqual(conn.stats["dropped_events"], 0)
        return conn

    def record_markers(self, preload, base, want=MARKERS, name="shim_api_edge", **env):
        """Runs shim_api_edge's markers (or those of `name`, a build of the
        same program) with record_run. Checks that each marker in `want` was
        recorded once, the kept one still live, and that the events' times lie
        within the run (the time the sender noted at its last round, or the
        clock before its first). Returns the program's closed connection."""
        started_ns = time.time_ns()
        main = self.record_run([program(name)], preload, base, SHIM_MARKERS=1, **env)
        markers = [s for s in main.alloc_sizes if s in MARKERS]
        self.assertEqual(sorted(markers), sorted(want),
                         "each marker allocation exactly once, none twice")
        self.assertEqual({s for s, _ in main.live.values() if s in MARKERS}, {KEPT},
                         "freed markers are gone from the live set, the kept one is live")
        self.assertTrue(main.alloc_times)
        late = [t for t in main.alloc_times if not started_ns - 10**9 <= t <= time.time_ns()]
        self.assertEqual(late, [], "alloc times outside the program's run")
        return main

    def assertFramePointerStacksMatch(self, record, want, min_direct):
        """Runs `record(**env)` (record_markers for some allocator) under
        libunwind and HEAPWATCH_UNWIND=fp and compares the stacks of the
        markers in `want` (shim_api_edge is built with frame pointers). Each
        innermost frame must match; where the program called the shim itself
        (at least min_direct markers), so must the program's frames above it
        (Markers and main): the walk stops where frame pointers end (libc,
        the C++ runtime), libunwind goes on."""
        stacks = {}
        for unwind, env in (("libunwind", {}), ("fp", {"HEAPWATCH_UNWIND": "fp"})):
            stacks[unwind] = marker_frames(record(**env), want)
            self.assertEqual(set(stacks[unwind]), set(want), unwind)
        exe = "shim_api_edge"
        direct = 0
        in_exe = lambda frames: list(itertools.takewhile(lambda f: f[0] == exe, frames))
        for size in sorted(want):
            walked, lu = stacks["fp"][size], stacks["libunwind"][size]
            with self.subTest(size=size, fp=walked[:4], libunwind=lu[:4]):
                self.assertEqual(walked[0], lu[0], "the innermost frame")
                if lu[0][0] != exe:
                    continue  # through the C++ runtime's operator
                direct += 1
                self.assertEqual(len(in_exe(lu)), 2, "Markers and main")
                self.assertEqual(in_exe(walked), in_exe(lu))
        self.assertGreaterEqual(direct, min_direct, "entry points the program calls itself")


def marker_frames(conn, sizes):
    """{size: stack of the last alloc event of that size} for each of
    `sizes` seen on connection `conn`, each frame as (module file name,
    offset into it): runs load modules at different addresses."""
    def frame(pc):
        m = next((m for m in conn.modules if m["start"] <= pc < m["end"]), None)
        return (os.path.basename(m["path"]), pc - m["start"]) if m else ("?", pc)
    return {size: [frame(pc) for pc in conn.stacks[sid]]
            for size, sid in conn.alloc_stacks.items() if size in sizes}


def _start_ready(case, name, env):
    """Starts test program `name` with environment `env` and pipes for its
    commands; returns it once it has said "ready"."""
    proc = subprocess.Popen([program(name)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    case.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
    case.assertEqual(proc.stdout.readline(), "ready\n")
    return proc


def start_interactive(case, name, **shim):
    """Starts test program `name` under the shim, talking to case.collector
    (keyword args become HEAPWATCH_* variables), with pipes for its commands;
    returns it once it has said "ready"."""
    import harness
    return _start_ready(case, name, harness.shim_env(case.collector, **shim))


def start_on_socket(case, name, socket_path, **env):
    """Like start_interactive, sending to `socket_path` (keyword args are
    HEAPWATCH_* variables, full names) instead of a collector."""
    full = dict(os.environ)
    full.update(LD_PRELOAD=SHIM, **shim_env(socket_path, **env))
    return _start_ready(case, name, full)


def command(case, proc, line, deadline=30):
    """Sends one command line to an interactive test program; its answer.
    Fails if the answer is an error, or if none comes: a program that hangs
    (in the shim, say) is killed after `deadline` s."""
    watchdog = threading.Timer(deadline, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline().strip()
    finally:
        watchdog.cancel()
    if not answer:
        proc.wait(10)
        case.fail(f"{line!r}: no answer; the program died or hung, exit status {proc.returncode}")
    case.assertFalse(answer.startswith("error"), f"{line!r}: {answer!r}")
    return answer


def finish_interactive(case, proc):
    """Tells a program started by start_interactive to quit ("q") and checks
    that it exits 0."""
    proc.stdin.write("q\n")
    proc.stdin.flush()
    case.assertEqual(proc.wait(30), 0)


def real_python():
    """The interpreter binary itself (not a pyenv shim script)."""
    return os.path.realpath(sys.executable)


class Connection:
    def __init__(self):
        self.hello = None
        self.exe = None
        self.modules = []
        self.stacks = {}
        self.live = {}           # address -> (size, stack_id)
        self.alloc_sizes = []    # size of every alloc event outside resyncs
        self.alloc_stacks = {}   # size -> stack_id of the last such event
        self.alloc_times = []    # time_ns of every alloc event outside resyncs
        self.free_count = 0
        self.resyncs = 0
        self.resync_sizes = []   # live_count of each completed resync
        self.stats = None
        self.frames = []         # frame type names, in order
        self.errors = []
        self.closed = False
        self._resync = None
        self._resync_gen = None

    @property
    def pid(self):
        return self.hello["pid"] if self.hello else None

    def feed(self, ftype, payload):
        name = FRAME_NAMES.get(ftype, f"unknown{ftype}")
        self.frames.append(name)
        if self.hello is None and name != "hello":
            self.errors.append(f"{name} before hello")
        if name == "hello":
            if self.hello is not None:
                self.errors.append("second hello")
            f = HELLO.unpack_from(payload)
            self.hello = dict(zip(("magic", "version", "exe_len", "pid", "ppid", "sample_bytes",
                                   "start_time_ns", "max_frames", "reserved"), f))
            if self.hello["magic"] != MAGIC or self.hello["version"] != 1:
                self.errors.append(f"bad hello {self.hello}")
            self.exe = payload[HELLO.size:HELLO.size + self.hello["exe_len"]].decode()
        elif name == "modules_reset":
            self.modules = []
        elif name == "module":
            bias, start, end, off, bid_len, path_len, _ = MODULE.unpack_from(payload)
            bid = payload[MODULE.size:MODULE.size + bid_len]
            path = payload[MODULE.size + bid_len:MODULE.size + bid_len + path_len].decode()
            if not start < end:
                self.errors.append(f"module {path} has empty range")
            self.modules.append(dict(path=path, load_bias=bias, start=start, end=end,
                                     file_offset=off, build_id=bid.hex()))
        elif name == "stack":
            sid, depth, _ = STACK.unpack_from(payload)
            pcs = struct.unpack_from(f"<{depth}Q", payload, STACK.size)
            if depth == 0 or depth > self.hello["max_frames"]:
                self.errors.append(f"stack depth {depth}")
            self.stacks[sid] = pcs
        elif name == "events":
            count, _ = struct.unpack_from("<II", payload)
            if len(payload) != 8 + count * EVENT.size:
                self.errors.append("events length mismatch")
            target = self._resync if self._resync is not None else self.live
            for i in range(count):
                kind, tid, addr, size, sid, t = EVENT.unpack_from(payload, 8 + i * EVENT.size)
                if kind == 1:
                    if sid not in self.stacks:
                        self.errors.append(f"alloc names unknown stack {sid:x}")
                    target[addr] = (size, sid)
                    if self._resync is None:
                        self.alloc_sizes.append(size)
                        self.alloc_stacks[size] = sid
                        self.alloc_times.append(t)
                elif kind == 2:
                    if self._resync is not None:
                        self.errors.append("free inside a resync")
                    target.pop(addr, None)
                    self.free_count += 1
                else:
                    self.errors.append(f"event kind {kind}")
        elif name == "resync_begin":
            gen, _ = MARKER.unpack_from(payload)
            if self._resync is not None:
                self.errors.append("nested resync")
            self._resync, self._resync_gen = {}, gen
        elif name == "resync_end":
            gen, count = MARKER.unpack_from(payload)
            if self._resync is None or gen != self._resync_gen:
                self.errors.append("unpaired resync end")
            elif count != len(self._resync):
                self.errors.append(f"resync count {count} != {len(self._resync)} sent")
            else:
                self.live = self._resync
                self.resyncs += 1
                self.resync_sizes.append(count)
            self._resync = None
        elif name == "stats":
            self.stats = dict(zip(STATS_FIELDS, STATS.unpack_from(payload)))
        else:
            self.errors.append(name)

    def live_of_size(self, size):
        return {a for a, (s, _) in self.live.items() if s == size}


class WireReceiver:
    """Listens on `path`; one decoding thread per shim connection."""

    def __init__(self, path):
        self.path = path
        self.connections = []
        self._lock = threading.Lock()
        self._socks = []
        self._listener = None
        self.start()

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(64)
        self._acceptor = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._acceptor.start()

    def stop(self):
        """Like a collector being killed: listener and connections vanish."""
        listener, self._listener = self._listener, None
        if listener:
            # Wake the accept thread (accept fails with EINVAL) and wait for
            # it before the descriptor is closed: a thread between reading
            # the number and calling accept() would otherwise accept on the
            # next listener given that number, and file its connections
            # under this receiver (a test's shim connected, flushed, and its
            # own receiver never saw it: about one run in ten under load).
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._acceptor.join(10)
            listener.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._socks = []
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self, listener):
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            conn = Connection()
            with self._lock:
                self.connections.append(conn)
                self._socks.append(sock)
            threading.Thread(target=self._read, args=(sock, conn), daemon=True).start()

    @staticmethod
    def _recv_exact(sock, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _read(self, sock, conn):
        try:
            while True:
                header = self._recv_exact(sock, 8)
                if header is None:
                    break
                length, ftype, _ = struct.unpack("<IHH", header)
                if length > (1 << 20):
                    conn.errors.append(f"frame of {length} bytes")
                    break
                payload = self._recv_exact(sock, length)
                if payload is None:
                    conn.errors.append("truncated frame")
                    break
                with self._lock:
                    conn.feed(ftype, payload)
        except OSError:
            pass
        except Exception as e:  # noqa: BLE001 - a decoding bug is a test failure
            conn.errors.append(f"decoder crashed: {e!r}")
        conn.closed = True

    def snapshot(self):
        with self._lock:
            return list(self.connections)

    def by_pid(self, pid):
        return [c for c in self.snapshot() if c.pid == pid]

    def wait_for(self, predicate, timeout=30.0, what="receiver state"):
        return wait_until(lambda: predicate(self.snapshot()), timeout, what=what)


def child_env(env_extra=None, preload=None):
    """This process's environment without LD_PRELOAD and HEAPWATCH_*, then
    `preload` as LD_PRELOAD and `env_extra` on top."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    for k in list(env):
        if k.startswith("HEAPWATCH_"):
            del env[k]
    if preload:
        env["LD_PRELOAD"] = preload
    env.update(env_extra or {})
    return env


def run(cmd, env_extra=None, preload=None, timeout=300, **kw):
    """Runs cmd to completion; returns CompletedProcess (text)."""
    return subprocess.run(cmd, env=child_env(env_extra, preload), capture_output=True, text=True,
                          timeout=timeout, **kw)


def shim_env(socket_path, **extra):
    env = {"HEAPWATCH_SOCKET": socket_path}
    env.update({k: str(v) for k, v in extra.items()})
    return env
