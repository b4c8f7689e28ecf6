#!/usr/bin/env bash
# What the shim costs as the live heap grows: shim_alloc_workload holding
# HOLD_MB MiB (16 KiB blocks) while its threads churn, for each size given.
# Every live sample makes some frees of unsampled pointers meet a non-empty
# filter cell (preload/live_table.h), so this is where free()'s filter shows.
# Reports, per heap size, the median of per-round ratios of the operations'
# CPU time (user+sys, the held heap's set-up excluded) to no profiler, over
# ROUNDS interleaved rounds; the shim sends to a discarding sink.
#
#   bench/shim/run_heap_sizes.sh [BUILD_DIR] [ROUNDS] [OPS] [HOLD_MB ...]
# Defaults: build-shim, 5 rounds, 4000000 operations, 16 256 1024 4096 MiB.
# COMPARE_SHIM=path/to/libheapwatch.so adds that shim (e.g. an older build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
rounds=${2:-5}
ops=${3:-4000000}
shift $(( $# < 3 ? $# : 3 ))
sizes=("${@:-16 256 1024 4096}")
shim=$build/preload/libheapwatch.so
workload=$build/bench/shim/shim_alloc_workload
require_built "build the shim and bench/shim first" "$shim" "$workload"

PYTHONPATH="$here" python3 - "$shim" "$workload" "$rounds" "$ops" "${COMPARE_SHIM:-}" ${sizes[*]} <<'PY'
import os, re, statistics, subprocess, sys
from rounds import interleaved, ratio_summary
from sink import start_discarding_sink

shim, workload, rounds, ops, compare_shim, *sizes = sys.argv[1:]
rounds = int(rounds)
sock = start_discarding_sink("hw-heap-sizes-")
configs = [("no profiler (glibc malloc)", {}),
           ("heapwatch", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sock})]
if compare_shim:
    configs.append((f"heapwatch, {compare_shim}", {"LD_PRELOAD": compare_shim, "HEAPWATCH_SOCKET": sock}))
print(f"workload: shim_alloc_workload 2 {ops} HOLD_MB, {rounds} interleaved rounds; "
      "CPU of the operations (user+sys), median of per-round ratios to no profiler [quartiles]")
print()
print("| held heap | " + " | ".join(name for name, _ in configs[1:]) + " | no profiler, CPU s |")
print("|---" * (len(configs) + 1) + "|")
for size in sizes:
    results = {name: [] for name, _ in configs}
    for _, (name, extra) in interleaved(rounds, configs):
        env = dict(os.environ)
        env.update(extra)
        run = subprocess.run([workload, "2", ops, size], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, check=True)
        results[name].append(float(re.search(r"ops-cpu-s ([0-9.]+)", run.stderr).group(1)))
    ref = results[configs[0][0]]
    cells = [ratio_summary(results[name], ref) for name, _ in configs[1:]]
    print(f"| {size} MiB | " + " | ".join(cells) + f" | {statistics.median(ref):.3f} |")
print()
print(f"load average at end {os.getloadavg()[0]:.1f}")
PY
