#!/usr/bin/env bash
# Whole-process overhead of heap profilers on an allocation-heavy workload,
# and the shim's per-call cost. Runs every configuration once per round,
# interleaved (so machine noise hits all alike), and reports medians and
# ratios to the run without a profiler, as a Markdown table.
#
#   bench/shim/run_overhead.sh [BUILD_DIR] [ROUNDS] [THREADS] [OPS]
# BUILD_DIR defaults to build-shim; it must contain the shim and bench/shim.
# COMPARE_SHIM=path/to/another/libheapwatch.so adds heapwatch (glibc and over
# jemalloc) with that library, e.g. an older build, to the same rounds.
# FAST_PEERS_ONLY=1 leaves out tcmalloc's HEAPPROFILE and heaptrack, which
# take 200-350x and 10-20x the workload's time (at 4M pairs HEAPPROFILE
# alone is ~4 minutes a round).
# Instruction counts of the same workload, which the machine's load does not
# move: bench/shim/run_callgrind.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
rounds=${2:-5}
threads=${3:-2}
ops=${4:-2000000}
shim=$build/preload/libheapwatch.so
workload=$build/bench/shim/shim_alloc_workload
fastpath=$build/bench/shim/shim_fastpath_bench
idle=$build/bench/shim/libshim_idle_thread.so
libdir=/usr/lib/x86_64-linux-gnu
require_built "build the shim and bench/shim first" "$shim" "$workload" "$fastpath" "$idle"

PYTHONPATH="$here" python3 - "$shim" "$workload" "$rounds" "$threads" "$ops" "$libdir" "${COMPARE_SHIM:-}" \
  "${FAST_PEERS_ONLY:-}" <<'PY'
import os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time
from rounds import ChildUsage, ratio_summary
from sink import start_discarding_sink

shim, workload, rounds, threads, ops, libdir, compare_shim, fast_peers_only = sys.argv[1:]
rounds = int(rounds)
load_start = os.getloadavg()[0]
# A stand-in collector that reads and discards, so the shim really sends.
sock_path = start_discarding_sink("hw-bench-")
tmp = os.path.dirname(sock_path)

je, tc = f"{libdir}/libjemalloc.so.2", f"{libdir}/libtcmalloc.so"
cmd = [workload, threads, ops]
# The shim with a mean gap of 2^50 bytes: no sample in any run, so neither
# sender nor unwinder; what is left is its start and the per-call paths
# (malloc's subtraction and branch, free's filter read), which the
# configuration beside it adds its samples to.
no_samples = {"HEAPWATCH_SAMPLE_BYTES": str(1 << 50), "HEAPWATCH_SOCKET": sock_path}
configs = [
    ("no profiler (glibc malloc)", {}, cmd),
    ("heapwatch, R = 512 KiB (glibc)", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sock_path}, cmd),
    ("heapwatch, per-call paths only (glibc)", {"LD_PRELOAD": shim, **no_samples}, cmd),
    ("jemalloc, no profiling", {"LD_PRELOAD": je}, cmd),
    ("jemalloc prof:true,lg_prof_sample:19", {"LD_PRELOAD": je,
        "MALLOC_CONF": "prof:true,lg_prof_sample:19"}, cmd),
    ("heapwatch, R = 512 KiB (over jemalloc)", {"LD_PRELOAD": f"{shim}:{je}",
        "HEAPWATCH_SOCKET": sock_path}, cmd),
    ("heapwatch, per-call paths only (over jemalloc)", {"LD_PRELOAD": f"{shim}:{je}",
        **no_samples}, cmd),
    ("tcmalloc, no profiling", {"LD_PRELOAD": tc}, cmd),
    ("heapwatch, R = 512 KiB (over tcmalloc)", {"LD_PRELOAD": f"{shim}:{tc}",
        "HEAPWATCH_SOCKET": sock_path}, cmd),
    ("heapwatch, per-call paths only (over tcmalloc)", {"LD_PRELOAD": f"{shim}:{tc}",
        **no_samples}, cmd),
    # Sampling alone (what MallocExtension::GetHeapSample reads), no profile dumps.
    ("tcmalloc sampling, TCMALLOC_SAMPLE_PARAMETER=524288", {"LD_PRELOAD": tc,
        "TCMALLOC_SAMPLE_PARAMETER": "524288"}, cmd),
    ("tcmalloc HEAPPROFILE, TCMALLOC_SAMPLE_PARAMETER=524288", {"LD_PRELOAD": tc,
        "HEAPPROFILE": os.path.join(tmp, "tc.heap"), "TCMALLOC_SAMPLE_PARAMETER": "524288"}, cmd),
    ("heaptrack", {}, ["heaptrack", "-o", os.path.join(tmp, "ht")] + cmd),
]
if fast_peers_only:
    configs = [c for c in configs if not c[0].startswith(("tcmalloc HEAPPROFILE", "heaptrack"))]
if compare_shim:
    # Each after this shim's row over the same allocator.
    def after(name):
        return [n for n, _, _ in configs].index(name) + 1
    configs.insert(after("heapwatch, R = 512 KiB (glibc)"), (f"heapwatch (glibc), {compare_shim}",
                   {"LD_PRELOAD": compare_shim, "HEAPWATCH_SOCKET": sock_path}, cmd))
    configs.insert(after("heapwatch, R = 512 KiB (over jemalloc)"),
                   (f"heapwatch over jemalloc, {compare_shim}",
                    {"LD_PRELOAD": f"{compare_shim}:{je}", "HEAPWATCH_SOCKET": sock_path}, cmd))
results = {name: {"wall": [], "cpu": []} for name, _, _ in configs}
for r in range(rounds):
    for name, extra, argv in configs:
        env = dict(os.environ)
        env.update(extra)
        with ChildUsage() as used:
            t0 = time.monotonic()
            p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"{name}: exit {p.returncode}")
        results[name]["wall"].append(wall)
        results[name]["cpu"].append(used.cpu)
    print(f"round {r + 1}/{rounds} done", file=sys.stderr)

base = results[configs[0][0]]
bw, bc = statistics.median(base["wall"]), statistics.median(base["cpu"])
je_ref = results["jemalloc, no profiling"]
tc_ref = results["tcmalloc, no profiling"]
print(f"workload: shim_alloc_workload {threads} {ops}, {rounds} interleaved rounds, "
      f"load average at start {load_start:.1f}, at end {os.getloadavg()[0]:.1f}")
print()
print("| configuration | wall s (median) | CPU s (median) | wall vs none | CPU vs none | CPU vs same allocator | per-round CPU ratio: median [quartiles] |")
print("|---|---|---|---|---|---|---|")
for name, extra, _ in configs:
    w, c = statistics.median(results[name]["wall"]), statistics.median(results[name]["cpu"])
    if "jemalloc" in name:
        ref = je_ref["cpu"]
    elif "tcmalloc" in name:
        ref = tc_ref["cpu"]
    else:
        ref = base["cpu"]
    print(f"| {name} | {w:.3f} | {c:.3f} | {w / bw:.3f}x | {c / bc:.3f}x | "
          f"{c / statistics.median(ref):.3f}x | {ratio_summary(results[name]['cpu'], ref)} |")
shutil.rmtree(tmp, ignore_errors=True)
PY

echo
echo "Fast path (Google Benchmark, CPU ns; 'shim' = LD_PRELOAD=libheapwatch.so, default R;"
echo "'idle thread' = LD_PRELOAD=libshim_idle_thread.so, no shim: the shim's sender is a second"
echo "thread, and glibc malloc takes its locked paths in any process with two):"
# One after another (process substitutions would run them at once, on the
# same cores).
fastpath_out=$(mktemp -d /tmp/hw-fastpath.XXXXXX)
trap 'rm -rf "$fastpath_out"' EXIT
run_fastpath() {
  local out=$1
  shift
  "$@" "$fastpath" --benchmark_min_time=0.3 --benchmark_format=csv 2>/dev/null |
    awk -F, 'NR > 1 {gsub(/"/, "", $1); print $1, ($4 == "" ? "-" : $4)}' > "$fastpath_out/$out"
}
run_fastpath none env
run_fastpath idle env LD_PRELOAD="$idle"
run_fastpath shim env LD_PRELOAD="$shim" HEAPWATCH_SOCKET=/nonexistent
run_fastpath every env LD_PRELOAD="$shim" HEAPWATCH_SOCKET=/nonexistent HEAPWATCH_SAMPLE_BYTES=1
paste -d' ' "$fastpath_out"/{none,idle,shim,every} |
  awk 'function v(x) { return x == "-" ? "n/a" : sprintf("%.1f", x) }
       function d(a, b) { return a == "-" || b == "-" ? "n/a" : sprintf("%+.1f", a - b) }
       BEGIN { print "| benchmark | no shim | idle thread | shim | added by the shim | beyond the idle thread | shim, R = 1 (every pair sampled) |"; print "|---|---|---|---|---|---|---|" }
       { printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, v($2), v($4), v($6), d($6, $2), d($6, $4), v($8) }'
