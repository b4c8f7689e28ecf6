#!/usr/bin/env bash
# Where the shim's CPU goes on shim_alloc_workload (over glibc): each
# configuration adds one thing to the one before it, run in interleaved
# rounds (alternating order), reported as medians of per-round ratios to no
# profiler in the same round, with the median minor-fault count:
#   an idle preloaded thread   what any second thread costs glibc malloc
#   HEAPWATCH_DISABLE=1        the shim loaded, pass-through
#   nothing sampled            fast paths and the sender (R = 10^12 bytes)
#   sampling, no collector     samples recorded, nothing sent
#   sampling and sending       to a socket that reads and discards
#   ... with frame pointers    the same, stacks by HEAPWATCH_UNWIND=fp
# The workload is built with frame pointers (shim_alloc_workload_fp), so that
# both unwinders see the same stacks.
#
# ABLATE=1 splits "sampling" into its steps with a benchmark build of the
# shim: HEAD with bench/shim/ablation.patch, built in a scratch directory
# (~1 min), where HEAPWATCH_ABLATE stops every sample after one step and
# nothing is pushed to the ring. Three more rows, after "nothing sampled":
#   samples decided, nothing recorded  the sampler's slow path, the real call
#   + stack and depot                  the unwind, the stack's id, the depot
#   + live table, no events            the insert, and the free that finds
#                                      and removes the sample
# "sampling, no collector" then adds the events (pushed, and discarded by a
# sender with no collector).
#
#   [ABLATE=1] bench/shim/run_breakdown.sh [BUILD_DIR] [ROUNDS] [THREADS] [OPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
rounds=${2:-11}
threads=${3:-2}
ops=${4:-400000}
shim=$build/preload/libheapwatch.so
workload=$build/bench/shim/shim_alloc_workload_fp
idle=$build/bench/shim/libshim_idle_thread.so
require_built "build the shim and bench/shim first" "$shim" "$workload" "$idle"
ablated=""
if [[ ${ABLATE:-0} == 1 ]]; then
  scratch=$(mktemp -d /tmp/hw-ablate-XXXXXX)
  trap 'rm -rf "$scratch"' EXIT
  repo=$(git -C "$here" rev-parse --show-toplevel)
  git -C "$repo" archive HEAD | tar -x -C "$scratch"
  git -C "$scratch" apply "$here/ablation.patch" 2>/dev/null ||
    { echo "bench/shim/ablation.patch no longer applies to preload/recorder.cc: update it" >&2; exit 1; }
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")
  cmake -S "$scratch" -B "$scratch/build" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE="${build_type:-RelWithDebInfo}" >/dev/null
  cmake --build "$scratch/build" --target heapwatch_preload -j"$(nproc)" >/dev/null
  ablated=$scratch/build/preload/libheapwatch.so
fi

PYTHONPATH="$here" python3 - "$shim" "$workload" "$rounds" "$threads" "$ops" "$idle" "$ablated" <<'PY'
import os, statistics, subprocess, sys
from rounds import ChildUsage, interleaved, ratio_summary
from sink import start_discarding_sink

shim, workload, rounds, threads, ops, idle, ablated = sys.argv[1:]
rounds = int(rounds)
sock = start_discarding_sink("hw-breakdown-")
steps = [
    ("samples decided, nothing recorded", "decide"),
    ("+ stack and depot", "stack"),
    ("+ live table, no events", "table"),
] if ablated else []
configs = [
    ("no profiler (glibc malloc)", {}),
    ("an idle preloaded thread (no shim)", {"LD_PRELOAD": idle}),
    ("shim loaded, HEAPWATCH_DISABLE=1", {"LD_PRELOAD": shim, "HEAPWATCH_DISABLE": "1"}),
    ("shim on, nothing sampled (R = 10^12)", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sock,
                                              "HEAPWATCH_SAMPLE_BYTES": "1000000000000"}),
    *[(f"{name} (ablated build)", {"LD_PRELOAD": ablated, "HEAPWATCH_SOCKET": sock,
                                   "HEAPWATCH_ABLATE": step}) for name, step in steps],
    ("sampling at R = 512 KiB, no collector", {"LD_PRELOAD": shim,
                                               "HEAPWATCH_SOCKET": "/nonexistent"}),
    ("sampling and sending", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sock}),
    ("... with frame pointers (HEAPWATCH_UNWIND=fp)", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sock,
                                                      "HEAPWATCH_UNWIND": "fp"}),
]
results = {name: [] for name, _ in configs}
for _, (name, extra) in interleaved(rounds, configs):
    env = dict(os.environ)
    env.update(extra)
    with ChildUsage() as used:
        subprocess.run([workload, threads, ops], env=env, stdout=subprocess.DEVNULL, check=True)
    results[name].append((used.cpu, used.minflt))
print(f"workload: shim_alloc_workload_fp {threads} {ops}, {rounds} interleaved rounds, "
      f"load average at end {os.getloadavg()[0]:.1f}")
print()
print("| configuration | CPU s (median) | CPU vs no profiler: median of per-round ratios [quartiles] | minor faults (median) |")
print("|---|---|---|---|")
ref = [cpu for cpu, _ in results[configs[0][0]]]
for name, _ in configs:
    cpu = [c for c, _ in results[name]]
    print(f"| {name} | {statistics.median(cpu):.3f} | {ratio_summary(cpu, ref)} | "
          f"{statistics.median(f for _, f in results[name]):.0f} |")
PY
