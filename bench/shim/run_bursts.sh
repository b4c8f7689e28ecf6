#!/usr/bin/env bash
# Does the shim's event ring keep up, or drop? The malloc loop under the shim,
# connected to a real heapwatchd, at several sampling rates (a smaller R is
# more events a second, as more threads on more cores would be) and ring
# sizes; for each run, the events the process pushed and how many of them the
# ring could not take, from the collector's /api/v1/processes counters. A
# drop also costs a resync (the whole live table re-sent).
#
#   bench/shim/run_bursts.sh [BUILD_DIR] [OPS=2000000] [RATES="524288 262144 131072 65536"]
#                            [RING_SLOTS="default"]
# RING_SLOTS: a list of HEAPWATCH_RING_SLOTS values; "default" leaves it unset.
# COMPARE_SHIM=path/to/another/libheapwatch.so adds that shim to every row.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
ops=${2:-2000000}
rates=${3:-524288 262144 131072 65536}
rings=${4:-default}
shim=$build/preload/libheapwatch.so
workload=$build/bench/shim/shim_alloc_workload
heapwatchd=$build/collector/heapwatchd
require_built "build the shim, the collector and bench/shim first" "$shim" "$workload" "$heapwatchd"

python3 - "$shim" "$workload" "$heapwatchd" "$ops" "$rates" "$rings" "${COMPARE_SHIM:-}" <<'PY'
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request

shim, workload, heapwatchd, ops, rates, rings, compare_shim = sys.argv[1:]
tmp = tempfile.mkdtemp(prefix="hw-bursts-")
sock = os.path.join(tmp, "hw.sock")
log = open(os.path.join(tmp, "heapwatchd.log"), "w+")
collector = subprocess.Popen([heapwatchd, "--socket", sock, "--http", "127.0.0.1:0",
                              "--data-dir", os.path.join(tmp, "data")], stdout=log, stderr=log)


def started():
    log.seek(0)
    for line in log:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") == "heapwatchd started" and os.path.exists(sock):
            return record["http"]
    return None


def process(http, pid):
    with urllib.request.urlopen(f"http://{http}/api/v1/processes", timeout=10) as r:
        for p in json.load(r)["processes"]:
            if p["pid"] == pid:
                return p
    return None


try:
    http = None
    for _ in range(100):
        http = started()
        if http:
            break
        time.sleep(0.1)
    if not http:
        sys.exit("heapwatchd did not start")
    shims = [("heapwatch", shim)] + ([(f"heapwatch, {compare_shim}", compare_shim)] if compare_shim else [])
    print(f"workload: shim_alloc_workload 2 {ops} under the shim, a real heapwatchd; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print()
    print("| shim | HEAPWATCH_SAMPLE_BYTES | ring slots | events pushed | dropped | resyncs |")
    print("|---|---|---|---|---|---|")
    for rate in rates.split():
        for ring in rings.split():
            for label, lib in shims:
                env = dict(os.environ, LD_PRELOAD=lib, HEAPWATCH_SOCKET=sock,
                           HEAPWATCH_SAMPLE_BYTES=rate)
                if ring != "default":
                    env["HEAPWATCH_RING_SLOTS"] = ring
                run = subprocess.Popen([workload, "2", ops], env=env, stdout=subprocess.DEVNULL)
                if run.wait() != 0:
                    sys.exit(f"{workload} exited with {run.returncode}")
                # The process's last stats frame comes with its exit.
                p = None
                for _ in range(100):
                    p = process(http, run.pid)
                    if p and p["state"] == "exited":
                        break
                    time.sleep(0.1)
                if not p:
                    sys.exit(f"process {run.pid} never showed up in the collector")
                c = p["counters"]
                pushed = c["sampled_allocs"] + c["sampled_frees"]
                share = f" ({100.0 * c['dropped_events'] / pushed:.1f}%)" if pushed else ""
                print(f"| {label} | {rate} | {ring} | {pushed:,} | {c['dropped_events']:,}{share} "
                      f"| {c['resyncs']} |")
finally:
    collector.terminate()
    collector.wait()
    shutil.rmtree(tmp, ignore_errors=True)
PY
