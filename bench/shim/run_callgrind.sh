#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind, all threads of the process)
# of shim_alloc_workload under each allocator with and without heapwatch.
# Unlike CPU time, these do not move with the load of a shared machine: the
# same binary, inputs and environment give the same count (to ~0.1%, from
# thread interleaving), so a few percent can be resolved. They are not time:
# a cache miss costs one instruction here and ~100 cycles on the CPU.
#
#   bench/shim/run_callgrind.sh [BUILD_DIR] [THREADS] [OPS]
# BUILD_DIR defaults to build-shim; heapwatch sends to a socket that reads
# and discards, as in run_overhead.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
threads=${2:-2}
ops=${3:-400000}
shim=$build/preload/libheapwatch.so
workload=$build/bench/shim/shim_alloc_workload
libdir=/usr/lib/x86_64-linux-gnu
require_built "build the shim and bench/shim first" "$shim" "$workload"
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }

PYTHONPATH="$here" python3 - "$shim" "$workload" "$threads" "$ops" "$libdir" <<'PY'
import os, re, shutil, socket, subprocess, sys, tempfile, threading
from sink import start_discarding_sink

shim, workload, threads, ops, libdir = sys.argv[1:]
load_start = os.getloadavg()[0]
sock_path = start_discarding_sink("hw-callgrind-")
tmp = os.path.dirname(sock_path)

je, tc = f"{libdir}/libjemalloc.so.2", f"{libdir}/libtcmalloc.so"
hw = {"HEAPWATCH_SOCKET": sock_path}
# A mean gap of 2^50 bytes: no sample, so no sender or unwinder either; the
# shim's start and per-call paths alone, which its row above adds samples to.
no_samples = {**hw, "HEAPWATCH_SAMPLE_BYTES": str(1 << 50)}
configs = [  # (name, environment, reference configuration)
    ("no profiler (glibc malloc)", {}, None),
    ("heapwatch, R = 512 KiB (glibc)", {"LD_PRELOAD": shim, **hw}, "no profiler (glibc malloc)"),
    ("heapwatch, per-call paths only (glibc)", {"LD_PRELOAD": shim, **no_samples},
     "no profiler (glibc malloc)"),
    ("jemalloc, no profiling", {"LD_PRELOAD": je}, None),
    ("jemalloc prof:true,lg_prof_sample:19", {"LD_PRELOAD": je,
     "MALLOC_CONF": "prof:true,lg_prof_sample:19"}, "jemalloc, no profiling"),
    ("heapwatch, R = 512 KiB (over jemalloc)", {"LD_PRELOAD": f"{shim}:{je}", **hw},
     "jemalloc, no profiling"),
    ("heapwatch, per-call paths only (over jemalloc)", {"LD_PRELOAD": f"{shim}:{je}", **no_samples},
     "jemalloc, no profiling"),
    ("tcmalloc, no profiling", {"LD_PRELOAD": tc}, None),
    ("heapwatch, R = 512 KiB (over tcmalloc)", {"LD_PRELOAD": f"{shim}:{tc}", **hw},
     "tcmalloc, no profiling"),
    ("heapwatch, per-call paths only (over tcmalloc)", {"LD_PRELOAD": f"{shim}:{tc}", **no_samples},
     "tcmalloc, no profiling"),
]

results = {}
for name, extra, _ in configs:
    out = os.path.join(tmp, "callgrind.out")
    env = dict(os.environ)
    env.update(extra)
    p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        workload, threads, ops], env=env, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        sys.exit(f"{name}: exit {p.returncode}\n{p.stderr[-2000:]}")
    results[name] = int(m.group(1))
    print(f"{name}: {int(m.group(1)):,} instructions", file=sys.stderr)

print(f"workload: shim_alloc_workload {threads} {ops}, valgrind --tool=callgrind "
      f"(instructions of all threads), load average at start {load_start:.1f}, at end {os.getloadavg()[0]:.1f}")
print()
pairs = int(threads) * int(ops)  # the workload's malloc/free pairs (plus 1/16 C++ objects)
print(f"| configuration | instructions | vs same allocator alone | added | added per malloc/free pair |")
print("|---|---|---|---|---|")
for name, _, ref in configs:
    total = results[name]
    if ref:
        added = total - results[ref]
        print(f"| {name} | {total:,} | {total / results[ref]:.3f}x | {added:,} | {added / pairs:.1f} |")
    else:
        print(f"| {name} | {total:,} | 1.000x | | |")
shutil.rmtree(tmp, ignore_errors=True)
PY
