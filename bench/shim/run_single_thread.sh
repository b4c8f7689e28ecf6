#!/usr/bin/env bash
# What the shim costs a single-threaded program by being there, not by
# sampling: its sender thread makes the process multi-threaded in glibc's
# eyes from the first sample on, for good, and glibc then locks every stdio
# call and takes its locked malloc paths. shim_single_thread_workload times
# one loop (CPU of its thread): getc over a 64 MiB file, putc and fprintf to
# /dev/null, and malloc/free of 2-3 KiB blocks (past glibc's per-thread
# cache). Median over ROUNDS interleaved rounds, and the median of per-round
# ratios to the same allocator alone, for: no profiler; a preloaded library
# that starts one idle thread and does nothing else (what any second thread
# costs); the shim disabled; the shim sending to a sink that reads and
# discards; and the peers over the same allocators: jemalloc's profiler
# (prof:true at the same rate), tcmalloc's sampler, heaptrack.
#
#   bench/shim/run_single_thread.sh [BUILD_DIR] [ROUNDS] [N]
# BUILD_DIR (default build-shim) needs the shim and the benchmarks; N is the
# putc count (fprintf lines and malloc pairs are N/10).
# COMPARE_SHIM=path/to/libheapwatch.so adds that shim (e.g. an older build),
# sending to the same sink.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
rounds=${2:-11}
count=${3:-100000000}
shim=$build/preload/libheapwatch.so
program=$build/bench/shim/shim_single_thread_workload
idle=$build/bench/shim/libshim_idle_thread.so
require_built "build the shim and the benchmarks first" "$shim" "$program" "$idle"

PYTHONPATH="$here" python3 - "$shim" "$program" "$idle" "$rounds" "$count" "${COMPARE_SHIM:-}" <<'PY'
import os, shutil, statistics, subprocess, sys
from rounds import interleaved, ratio_summary
from sink import start_discarding_sink

shim, program, idle, rounds, count, compare = sys.argv[1:]
rounds, count = int(rounds), int(count)
sink = start_discarding_sink("hw-single-")
tmp = os.path.dirname(sink)
data = os.path.join(tmp, "data.bin")
with open(data, "wb") as f:
    f.write(os.urandom(64 << 20))
libdir = "/usr/lib/x86_64-linux-gnu"
je, tc = f"{libdir}/libjemalloc.so.2", f"{libdir}/libtcmalloc.so"
configs = [
    ("no profiler", {}, []),
    ("an idle preloaded thread, no shim", {"LD_PRELOAD": idle}, []),
    ("shim, HEAPWATCH_DISABLE=1", {"LD_PRELOAD": shim, "HEAPWATCH_DISABLE": "1"}, []),
    ("shim, sending to a sink", {"LD_PRELOAD": shim, "HEAPWATCH_SOCKET": sink}, []),
    ("heaptrack", {}, ["heaptrack", "-o", os.path.join(tmp, "ht")]),
    ("jemalloc alone", {"LD_PRELOAD": je}, []),
    ("jemalloc prof:true,lg_prof_sample:19", {"LD_PRELOAD": je, "MALLOC_CONF": "prof:true,lg_prof_sample:19"}, []),
    ("shim over jemalloc, sending to a sink", {"LD_PRELOAD": f"{shim}:{je}", "HEAPWATCH_SOCKET": sink}, []),
    ("tcmalloc alone", {"LD_PRELOAD": tc}, []),
    ("tcmalloc sampling, TCMALLOC_SAMPLE_PARAMETER=524288", {"LD_PRELOAD": tc, "TCMALLOC_SAMPLE_PARAMETER": "524288"}, []),
    ("shim over tcmalloc, sending to a sink", {"LD_PRELOAD": f"{shim}:{tc}", "HEAPWATCH_SOCKET": sink}, []),
]
if compare:
    configs.insert(4, ("compared shim, sending to a sink", {"LD_PRELOAD": compare, "HEAPWATCH_SOCKET": sink}, []))
if not shutil.which("heaptrack"):
    configs = [c for c in configs if c[0] != "heaptrack"]
reference = {name: ("jemalloc alone" if "jemalloc" in name else
                    "tcmalloc alone" if "tcmalloc" in name else "no profiler") for name, _, _ in configs}
modes = [("getc", ["getc", "0", data]), ("putc", ["putc", str(count)]),
         ("fprintf", ["printf", str(count // 10)]), ("malloc 2-3 KiB", ["malloc", str(count // 10)])]

times = {(m, name): [] for m, _ in modes for name, _, _ in configs}
for r, (name, extra, wrapper) in interleaved(rounds, configs):
    env = dict(os.environ, **extra)
    for mode, args in modes:
        p = subprocess.run(wrapper + [program] + args, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        line = [l for l in p.stderr.splitlines() if l.startswith(args[0] + " ")]
        if p.returncode != 0 or not line:
            sys.exit(f"{name}, {mode}: exit {p.returncode}: {p.stderr[-500:]}")
        times[(mode, name)].append(float(line[-1].split()[1]))
    if name == configs[-1 if r % 2 == 0 else 0][0]:
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)

print(f"shim_single_thread_workload, N = {count}, {rounds} interleaved rounds; "
      "CPU seconds of the loop (median), and per-round ratio to the same allocator alone")
print()
print("| configuration | " + " | ".join(f"{m}, s | ratio" for m, _ in modes) + " |")
print("|---|" + "---|---|" * len(modes))
for name, _, _ in configs:
    cells = []
    for mode, _ in modes:
        v = times[(mode, name)]
        cells.append(f"{statistics.median(v):.3f} | {ratio_summary(v, times[(mode, reference[name])])}")
    print(f"| {name} | " + " | ".join(cells) + " |")
shutil.rmtree(tmp, ignore_errors=True)
PY
