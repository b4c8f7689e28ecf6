#!/usr/bin/env bash
# What the shim costs a process that spawns others: shim_spawn_workload forks
# COUNT children that _exit at once ("fork + _exit") or exec /bin/true
# ("fork + exec true"), or starts /bin/true with posix_spawn (no fork: what
# Python's subprocess and Go do), each waited for; the parent samples (it
# allocates 17 MB first), the children do not. Wall time per child, median over ROUNDS
# interleaved rounds, and the median of per-round ratios to the same
# allocator alone, for: no shim; the shim disabled (HEAPWATCH_DISABLE=1);
# the shim with no collector (a socket path that does not exist); the shim
# sending to a sink that reads and discards (bench/shim/sink.py); and the
# peers: jemalloc's profiler (prof:true at the same rate) and tcmalloc's
# sampler, each beside the shim over the same allocator. Last, a parent with
# a worker thread of its own (as a service has), without and with the shim:
# glibc's fork takes its path for a process with threads in both, which a
# single-threaded parent takes only because of the shim's sender.
#
#   bench/shim/run_spawn.sh [BUILD_DIR] [ROUNDS] [COUNT]
# BUILD_DIR (default build-shim) needs the shim and the benchmarks.
# COMPARE_SHIM=path/to/libheapwatch.so adds that shim (e.g. an older build),
# with no collector and with the sink.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
rounds=${2:-9}
count=${3:-200}
shim=$build/preload/libheapwatch.so
program=$build/bench/shim/shim_spawn_workload
require_built "build the shim and the benchmarks first" "$shim" "$program"

PYTHONPATH="$here" python3 - "$shim" "$program" "$rounds" "$count" "${COMPARE_SHIM:-}" <<'PY'
import os, statistics, subprocess, sys
from rounds import interleaved, ratio_summary
from sink import start_discarding_sink

shim, program, rounds, count, compare_shim = sys.argv[1:]
rounds = int(rounds)
sink = start_discarding_sink("hw-spawn-")
libdir = "/usr/lib/x86_64-linux-gnu"
je, tc = f"{libdir}/libjemalloc.so.2", f"{libdir}/libtcmalloc.so"
configs = [
    ("no shim", {}),
    ("shim, HEAPWATCH_DISABLE=1", {"LD_PRELOAD": shim, "HEAPWATCH_DISABLE": "1"}),
    ("shim, no collector", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": "/nonexistent/hw.sock"}),
    ("shim, sending to a sink", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sink}),
    # The peers, each against the same allocator alone (the ratio column).
    ("jemalloc alone", {"LD_PRELOAD": je}),
    ("jemalloc prof:true,lg_prof_sample:19", {"LD_PRELOAD": je, "MALLOC_CONF": "prof:true,lg_prof_sample:19"}),
    ("shim over jemalloc, sending to a sink", {"LD_PRELOAD": f"{shim}:{je}", "HEAPWATCH_SOCKET": sink}),
    ("tcmalloc alone", {"LD_PRELOAD": tc}),
    ("tcmalloc sampling, TCMALLOC_SAMPLE_PARAMETER=524288", {"LD_PRELOAD": tc, "TCMALLOC_SAMPLE_PARAMETER": "524288"}),
    ("shim over tcmalloc, sending to a sink", {"LD_PRELOAD": f"{shim}:{tc}", "HEAPWATCH_SOCKET": sink}),
]

# A parent with one worker thread: the last two rows, the second against the first.
threaded = ["no shim, parent with a thread", "shim, parent with a thread, sending to a sink"]
configs += [
    (threaded[0], {}),
    (threaded[1], {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sink}),
]

if compare_shim:
    configs += [
        (f"{compare_shim}, no collector", {"LD_PRELOAD": compare_shim, "HEAPWATCH_SOCKET": "/nonexistent/hw.sock"}),
        (f"{compare_shim}, sending to a sink", {"LD_PRELOAD": compare_shim, "HEAPWATCH_SOCKET": sink}),
    ]

# Each configuration's reference: the allocator it runs over, alone.
reference = {name: ("jemalloc alone" if "jemalloc" in name else
                    "tcmalloc alone" if "tcmalloc" in name else
                    threaded[0] if name in threaded else "no shim") for name, _ in configs}

print(f"shim_spawn_workload {count} exit|exec|spawn, {rounds} interleaved rounds")
print()
print("| configuration | fork + _exit, us a child | ratio | fork + exec true, us a child | ratio "
      "| posix_spawn true, us a child | ratio |")
print("|---|---|---|---|---|---|---|")
results = {}
for mode in ("exit", "exec", "spawn"):
    times = {name: [] for name, _ in configs}
    for _, (name, extra) in interleaved(rounds, configs):
        env = dict(os.environ)
        env.update(extra)
        args = [program, count, mode] + (["1"] if name in threaded else [])
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
        times[name].append(float(out.stdout))
    results[mode] = times
for name, _ in configs:
    cells = []
    for mode in ("exit", "exec", "spawn"):
        t = results[mode][name]
        cells += [f"{statistics.median(t):.0f}", ratio_summary(t, results[mode][reference[name]])]
    print(f"| {name} | " + " | ".join(cells) + " |")
print()
print(f"load average at end {os.getloadavg()[0]:.1f}")
PY
