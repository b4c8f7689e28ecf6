"""Helpers for the collector's end-to-end tests (no tests in this module).

Frames are written with `struct` following wire/include/heapwatch/wire.h, so a
test can play a shim (well-behaved or not) against the real heapwatchd; the
Prometheus text and /proc readers are just what the tests need.
"""
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from harness import PROGRAMS

MAGIC = 0x31505748
VERSION = 1
MAX_FRAME_BYTES = 1 << 20
HEADER = struct.Struct("<IHH")
HELLO = struct.Struct("<IHHIIQQII")
MODULE = struct.Struct("<QQQQHHI")
STACK = struct.Struct("<QII")
EVENTS_HEADER = struct.Struct("<II")
EVENT = struct.Struct("<IIQQQQ")
MARKER = struct.Struct("<QQ")
STATS = struct.Struct("<8Q")
T_HELLO, T_MODULES_RESET, T_MODULE, T_STACK, T_EVENTS, T_RESYNC_BEGIN, T_RESYNC_END, T_STATS = range(1, 9)
ALLOC, FREE = 1, 2


def program(name):
    return os.path.join(PROGRAMS, name)


def frame(ftype, payload=b"", length=None):
    return HEADER.pack(len(payload) if length is None else length, ftype, 0) + payload


def hello(pid=None, exe="/bin/fake-shim", start_ns=None, sample_bytes=1, ppid=1, magic=MAGIC,
          version=VERSION):
    exe_b = exe.encode()
    return frame(T_HELLO, HELLO.pack(magic, version, len(exe_b), os.getpid() if pid is None else pid,
                                     ppid, sample_bytes, start_ns or time.time_ns(), 64, 0) + exe_b)


def module(start, end, path, build_id=b"", load_bias=0, file_offset=0):
    p = path.encode()
    return frame(T_MODULE, MODULE.pack(load_bias, start, end, file_offset, len(build_id), len(p), 0)
                 + build_id + p)


def stack(stack_id, pcs):
    return frame(T_STACK, STACK.pack(stack_id, len(pcs), 0) + struct.pack(f"<{len(pcs)}Q", *pcs))


def events(records):
    """records: (kind, address, size, stack_id) tuples."""
    body = b"".join(EVENT.pack(kind, 1, addr, size, sid, time.time_ns())
                    for kind, addr, size, sid in records)
    return frame(T_EVENTS, EVENTS_HEADER.pack(len(records), 0) + body)


def resync(begin, generation=1, count=0):
    return frame(T_RESYNC_BEGIN if begin else T_RESYNC_END, MARKER.pack(generation, count))


class FakeShim:
    """A client on the collector's socket speaking (or abusing) the wire format."""

    def __init__(self, socket_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socket_path)

    def send(self, data):
        self.sock.sendall(data)
        return self

    def closed_by_peer(self, timeout=10.0):
        """True once the collector has closed this connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


# --- Prometheus text ---------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{name: [(labels dict, value)]} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError(f"unparsable metrics line: {line!r}")
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return out


def metric(collector, name, **labels):
    """The value of one sample (labels must match those given), or None."""
    text = collector.request("/metrics")[2].decode()
    for got, value in parse_metrics(text).get(name, []):
        if all(got.get(k) == str(v) for k, v in labels.items()):
            return value
    return None


def ingest_errors(collector):
    text = collector.request("/metrics")[2].decode()
    return {labels["reason"]: value
            for labels, value in parse_metrics(text).get("heapwatch_ingest_errors_total", [])}


# --- /proc -------------------------------------------------------------------

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def hwm_bytes(pid):
    """Peak RSS (VmHWM): catches a spike between two polls."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


# --- go tool pprof ------------------------------------------------------------

class GoPprof:
    """Runs Debian's `go tool pprof` offline in a private HOME."""

    def __init__(self):
        self.go = shutil.which("go")
        self.home = tempfile.mkdtemp(prefix="hw-gohome-")

    def available(self):
        return self.go is not None

    def run(self, *args, timeout=120):
        env = dict(os.environ)
        env.update({"HOME": self.home, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local",
                    "GOPROXY": "off", "GOPATH": os.path.join(self.home, "go"),
                    "GOCACHE": os.path.join(self.home, "cache"), "PPROF_TMPDIR": self.home,
                    "PPROF_BINARY_PATH": self.home})
        env.pop("LD_PRELOAD", None)
        r = subprocess.run([self.go, "tool", "pprof", *args], env=env, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError(f"go tool pprof {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def cleanup(self):
        shutil.rmtree(self.home, ignore_errors=True)


# --- flood client -------------------------------------------------------------

def program_stack_pcs(i, depth):
    """Program counters of the i-th distinct stack of a synthetic program,
    innermost first: a fixed outer third (main, event loop, dispatch), six
    levels of call sites chosen by the base-8 digits of i (a call site
    depends on its level, its digit and its caller's digit, as in a real
    call graph), and a fixed allocator chain innermost. Distinct stacks share
    prefixes the way a real service's do."""
    vary = 6
    outer = max((depth - vary) // 2, 0)
    inner = max(depth - vary - outer, 0)
    pcs = [0x400000 + 16 * k for k in range(outer)]
    prev = 0
    for level in range(vary):
        digit = (i >> (3 * level)) & 7
        pcs.append(0x500000 + 16 * ((level * 8 + prev) * 8 + digit))
        prev = digit
    pcs += [0x600000 + 16 * k for k in range(inner)]
    return list(reversed(pcs[:depth]))


def flood_client(socket_path, first_stack, stacks, depth=8, allocs_per_frame=1000, shape="distinct"):
    """Runs in a child process: one shim-like connection sending `stacks`
    distinct stacks and one live allocation on each, then "sent" on stdout;
    keeps the connection open until stdin closes. `shape` "distinct" gives
    every stack program counters of its own (the worst case); "program"
    gives stacks that share frames as in a real program (program_stack_pcs)."""
    import sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(socket_path)
    s.sendall(hello(exe="/bin/flood", sample_bytes=1))
    pcs_fmt = struct.Struct(f"<QII{depth}Q")
    head = HEADER.pack(pcs_fmt.size, T_STACK, 0)
    now = time.time_ns()
    chunk = []
    for i in range(first_stack, first_stack + stacks):
        # Distinct ids and program counters per stack (i is unique overall).
        pcs = program_stack_pcs(i, depth) if shape == "program" else [(i << 8) + k for k in range(depth)]
        chunk.append(head + pcs_fmt.pack(i, depth, 0, *pcs))
        if len(chunk) == allocs_per_frame:
            s.sendall(b"".join(chunk))
            chunk = []
    s.sendall(b"".join(chunk))
    ev = EVENT.pack
    for base in range(first_stack, first_stack + stacks, allocs_per_frame):
        n = min(allocs_per_frame, first_stack + stacks - base)
        body = b"".join(ev(ALLOC, 1, (base + j) << 4, 64, base + j, now) for j in range(n))
        s.sendall(frame(T_EVENTS, EVENTS_HEADER.pack(n, 0) + body))
    s.sendall(frame(T_STATS, STATS.pack(stacks, 0, 0, 0, 0, 0, stacks, 0)))
    sys.stdout.write("sent\n")
    sys.stdout.flush()
    sys.stdin.read()
    s.close()
