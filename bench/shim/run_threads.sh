#!/usr/bin/env bash
# Memory and CPU the shim costs a process with many threads that sample
# (libunwind's per-thread trace caches, preload/unwinder.h):
# tests/programs/shim/shim_threads with THREADS threads, each allocating 64
# blocks of 64 KiB while all are alive: ~8 samples a thread at the default
# rate, ~64 at R = 64 KiB. Reports the median RssAnon once every thread is
# done, and the CPU time (user+sys) of the whole run, over ROUNDS
# interleaved rounds, for: no shim; the shim with no cap on trace caches
# (HEAPWATCH_UNWIND_CACHES=4096); the default cap (32); and no trace cache
# at all (0: every thread steps with unw_step).
#
#   bench/shim/run_threads.sh [BUILD_DIR] [ROUNDS] [THREADS]
# BUILD_DIR (default build-shim) needs the shim and the test programs
# (BUILD_TESTING on, the default). COMPARE_SHIM=path/to/libheapwatch.so adds
# that shim (e.g. an older build) at both rates.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
rounds=${2:-5}
threads=${3:-64}
shim=$build/preload/libheapwatch.so
program=$build/tests/programs/shim_threads
require_built "build the shim and the test programs first" "$shim" "$program"

PYTHONPATH="$here" python3 - "$shim" "$program" "$rounds" "$threads" "${COMPARE_SHIM:-}" <<'PY'
import os, statistics, subprocess, sys
from rounds import ChildUsage, interleaved

shim, program, rounds, threads, compare_shim = sys.argv[1:]
rounds = int(rounds)
configs = [("no shim", {})]
for rate in ("524288", "65536"):
    shim_env = {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": "/nonexistent", "HEAPWATCH_SAMPLE_BYTES": rate}
    configs += [
        (f"R = {rate}, no cap (HEAPWATCH_UNWIND_CACHES=4096)", dict(shim_env, HEAPWATCH_UNWIND_CACHES="4096")),
        (f"R = {rate}, default cap (32 trace caches)", shim_env),
        (f"R = {rate}, no trace cache (HEAPWATCH_UNWIND_CACHES=0)", dict(shim_env, HEAPWATCH_UNWIND_CACHES="0")),
    ]
    if compare_shim:
        configs.append((f"R = {rate}, {compare_shim}", dict(shim_env, LD_PRELOAD=compare_shim)))


def rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon")


results = {name: ([], []) for name, _ in configs}
for _, (name, extra) in interleaved(rounds, configs):
    env = dict(os.environ)
    env.update(extra)
    with ChildUsage() as used:
        p = subprocess.Popen([program, threads, "64", "65536"], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if p.stdout.readline() != "ready\n":
            sys.exit(f"{name}: no ready")
        rss = rss_anon_kb(p.pid)
        p.communicate("q\n")
    if p.returncode != 0:
        sys.exit(f"{name}: exit {p.returncode}")
    results[name][0].append(rss)
    results[name][1].append(used.cpu)

print(f"shim_threads {threads} 64 65536 (each thread: 64 blocks of 64 KiB), {rounds} interleaved rounds, "
      f"load average at end {os.getloadavg()[0]:.1f}")
print()
print("| configuration | RssAnon, median | added to no shim | CPU s, median |")
print("|---|---|---|---|")
base = statistics.median(results[configs[0][0]][0])
for name, _ in configs:
    rss, cpu = results[name]
    m = statistics.median(rss)
    print(f"| {name} | {m / 1024:.1f} MiB | {(m - base) / 1024:+.1f} MiB | {statistics.median(cpu):.3f} |")
PY
