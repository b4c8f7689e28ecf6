#!/usr/bin/env python3
"""Latency of /api/v1/profile and /debug/pprof/heap over HTTP against a real
heapwatchd fed N distinct stacks (one live allocation each) by a fake shim,
and heapwatchd's RSS before and after. Medians of several requests.

  bench/collector/http_latency.py BUILD_DIR [STACKS] [DEPTH] [RUNS] [SHAPE]

SHAPE is "program" (stacks share frames as a real program's do; see
tests/e2e/test_collector_support.program_stack_pcs) or "distinct" (every
stack has program counters of its own: the worst case).
"""
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
build = os.path.abspath(sys.argv[1])
os.environ.setdefault("HEAPWATCHD", os.path.join(build, "collector", "heapwatchd"))
os.environ.setdefault("HEAPWATCH_UI_DIR", os.path.join(HERE, "..", "..", "ui"))
import harness  # noqa: E402
from test_collector_support import rss_bytes  # noqa: E402

stacks = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 24
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
shape = sys.argv[5] if len(sys.argv) > 5 else "program"

c = harness.Collector(args=["--max-stacks", str(stacks + 1), "--max-total-stacks", str(stacks + 1)])
c.start()
try:
    idle = rss_bytes(c.proc.pid)
    client = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import test_collector_support as s; "
         "s.flood_client(sys.argv[2], 1, int(sys.argv[3]), int(sys.argv[4]), shape=sys.argv[5])",
         os.path.join(HERE, "..", "..", "tests", "e2e"), c.socket_path, str(stacks), str(depth), shape],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline() == "sent\n"
    pid = os.getpid()
    harness.wait_until(lambda: any(p["exe"] == "/bin/flood" and p["counters"]["events"] == stacks
                                   for p in c.get_json("/api/v1/processes")["processes"]), timeout=300)
    pid = [p["pid"] for p in c.get_json("/api/v1/processes")["processes"] if p["exe"] == "/bin/flood"][0]
    fed = rss_bytes(c.proc.pid)
    for path in (f"/api/v1/profile?pid={pid}", f"/debug/pprof/heap?pid={pid}"):
        times = []
        for _ in range(runs):
            t = time.monotonic()
            size = len(c.request(path, timeout=120)[2])
            times.append(time.monotonic() - t)
        print(f"{path.split('?')[0]:24s} median {statistics.median(times) * 1000:7.1f} ms "
              f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}; {size} bytes)")
    after = rss_bytes(c.proc.pid)
    print(f"heapwatchd RSS: idle {idle / 2**20:.1f} MiB, fed {stacks} {shape} stacks (depth {depth}) "
          f"{fed / 2**20:.1f} MiB, after the requests {after / 2**20:.1f} MiB")
    client.stdin.close()
    client.wait()
finally:
    c.cleanup()
