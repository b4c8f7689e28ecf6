#!/usr/bin/env bash
# Overhead of heap profilers on real programs, not a malloc loop:
#   g++   `g++ -std=c++20 -O2 -c collector/process.cc` (the driver, cc1plus and
#         as: three processes, LD_PRELOAD is inherited by each);
#   python `python3` churning dicts, lists, strings and bytes (~1 s);
#   demo  `heapwatch-demo --threads 2 --requests 200000 --rps 0 ...`: the demo
#         service (parse, render, cache, leak 64 B a request) serving a fixed
#         number of requests as fast as it can on two threads (~0.6 s of CPU);
# and, when asked for (PROGRAMS, below):
#   sqlite3 200k rows of random blobs inserted into a fresh database and
#         indexed (~0.3 s);
#   node  Node.js filling a Map with 300k Buffers (calloc'd backing stores)
#         and deflating 300 16 KiB buffers with zlib (~0.6 s).
#
# Each program runs under: no profiler; heapwatch (glibc); jemalloc; jemalloc
# with its profiler at heapwatch's rate (prof:true,lg_prof_sample:19);
# heapwatch over jemalloc; tcmalloc; tcmalloc sampling at the same rate
# (TCMALLOC_SAMPLE_PARAMETER=524288); heapwatch over tcmalloc; heaptrack (CPU
# time only: it preloads its own library and pipes to heaptrack_interpret,
# which callgrind's count would mix in, so it is skipped there).
#
# Two instruments, each reported as a ratio to the same allocator alone:
#   callgrind  valgrind --tool=callgrind --trace-children=yes, instructions
#              summed over every process: the same for the same binaries and
#              inputs whatever the machine's load, so a few percent resolve;
#              they are not time (page faults and cache misses are missing).
#   cpu        user+sys of the children (RUSAGE_CHILDREN) over ROUNDS
#              interleaved rounds; per configuration the median of its
#              per-round ratios to its reference run in the same round.
#
#   bench/shim/run_programs.sh [BUILD_DIR] [ROUNDS] [MODE]
# BUILD_DIR defaults to build-shim; ROUNDS to 5; MODE is all, cpu or
# callgrind. JOBS (default 2) callgrind runs at once (counts do not depend on
# it); PROGRAMS="g++ python demo" (the default; also sqlite3, node) picks
# programs by a word of their name; COMPARE_SHIM=path/to/another/libheapwatch.so adds heapwatch (glibc)
# with that library, e.g. an older build. heapwatch sends to a socket that
# reads and discards; the last column lists the executables that said hello.
# Under callgrind the shim's sender wakes every 10-100 ms of a run slowed
# ~50x: a process that waits (the g++ driver for cc1plus) counts idle rounds
# that natively take ~50x fewer (~20M instructions at 10 ms, before the
# sender's sleep followed the event rate).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$repo/build-shim}" && pwd)  # absolute: the programs run in scratch directories
rounds=${2:-5}
mode=${3:-all}
shim=$build/preload/libheapwatch.so
libdir=/usr/lib/x86_64-linux-gnu
require_built "build the shim first" "$shim"
case $mode in all|cpu|callgrind) ;; *) echo "MODE must be all, cpu or callgrind" >&2; exit 1;; esac
if [[ $mode != cpu ]]; then command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }; fi

PYTHONPATH="$here" python3 - "$repo" "$shim" "$rounds" "$mode" "$libdir" "${JOBS:-2}" "${COMPARE_SHIM:-}" <<'PY'
import concurrent.futures, os, re, shutil, socket, statistics, struct, subprocess
import sys, tempfile, threading, time
from rounds import ChildUsage

repo, shim, rounds, mode, libdir, jobs, compare_shim = sys.argv[1:]
rounds, jobs = int(rounds), int(jobs)
load_start = os.getloadavg()
started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
tmp = tempfile.mkdtemp(prefix="hw-programs-")

CHURN = r'''
import random
random.seed(7)
live = {}
total = 0
for i in range(150000):
    k = f"key-{random.randrange(20000)}"
    n = random.choice((8, 40, 200, 700, 3000))
    v = {"id": i, "name": k * (n // len(k) + 1), "tags": [str(j) for j in range(n % 13)],
         "blob": bytes(n)}
    live[k] = v
    if i % 7 == 0:
        live.pop(f"key-{random.randrange(20000)}", None)
    if i % 1000 == 0:
        total += len(",".join(x["name"][:50] for x in list(live.values())[:200]))
print(len(live), total)
'''
churn = os.path.join(tmp, "churn.py")
with open(churn, "w") as f:
    f.write(CHURN)

SQL = ("create table t(a, b); with recursive c(x) as (select 1 union all select x + 1 from c"
       " where x < 200000) insert into t select x, hex(randomblob(40)) from c;"
       " create index i on t(b); select count(*), sum(length(b)) from t;")
NODE = r'''
const zlib = require('zlib');
let m = new Map();
let total = 0;
for (let i = 0; i < 300000; i++) {
  m.set('k' + (i % 50000), Buffer.alloc(64 + (i * 7919) % 2000));
  if (i % 1000 === 0) total += zlib.deflateSync(Buffer.alloc(16384, i % 251)).length;
}
for (const v of m.values()) total += v.length;
console.log(m.size, total);
'''
node_script = os.path.join(tmp, "buffers.js")
with open(node_script, "w") as f:
    f.write(NODE)

def gxx_argv(out):
    return ["g++", "-std=c++20", "-O2", f"-I{repo}", f"-I{repo}/wire/include", "-c",
            f"{repo}/collector/process.cc", "-o", out]
demo = os.path.join(os.path.dirname(os.path.dirname(shim)), "demo", "heapwatch-demo")
programs = [  # (name, argv builder taking a scratch directory)
    ("g++ -O2 -c collector/process.cc", lambda d: gxx_argv(os.path.join(d, "process.o"))),
    ("python3 dict/list/str churn", lambda d: ["python3", churn]),
    ("heapwatch-demo, 200k requests on 2 threads",
     lambda d: [demo, "--threads", "2", "--requests", "200000", "--rps", "0",
                "--leak-bytes", "64", "--cache-entries", "20000"]),
    ("sqlite3 200k rows and an index", lambda d: ["sqlite3", os.path.join(d, "t.db"), SQL]),
    ("node Buffers and zlib", lambda d: ["node", node_script]),
]
programs = [p for p in programs
            if any(w in p[0] for w in os.environ.get("PROGRAMS", "g++ python demo").split())]
for p in programs:
    tool = p[1](tmp)[0]
    if not (os.access(tool, os.X_OK) or shutil.which(tool)):
        sys.exit(f"missing {tool} (scripts/install-deps.sh installs it)")
if any("demo" in p[0] for p in programs) and not os.access(demo, os.X_OK):
    sys.exit(f"missing {demo} (build the demo: cmake --build BUILD_DIR --target heapwatch_demo)")

class Sink:
    """A stand-in collector that reads and discards; notes each hello's exe."""
    def __init__(self, path):
        self.path, self.exes, self.lock = path, [], threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()
    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.read, args=(c,), daemon=True).start()
    def read(self, c):
        head = b""
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            if len(head) < 4096:
                head += b
                # FrameHeader (8 bytes), then Hello: exe_len at offset 6, exe after 40.
                if len(head) >= 48:
                    exe_len = struct.unpack_from("<H", head, 8 + 6)[0]
                    if len(head) >= 48 + exe_len:
                        with self.lock:
                            self.exes.append(os.path.basename(head[48:48 + exe_len].decode()))
                        head = b"x" * 4096
    def close(self):
        self.sock.close()

je, tc = f"{libdir}/libjemalloc.so.2", f"{libdir}/libtcmalloc.so"
NONE, JE, TC = "no profiler (glibc malloc)", "jemalloc, no profiling", "tcmalloc, no profiling"
configs = [  # (name, environment, reference, uses heapwatch, wraps argv)
    (NONE, {}, NONE, False, None),
    ("heapwatch, R = 512 KiB (glibc)", {"LD_PRELOAD": shim}, NONE, True, None),
]
if compare_shim:
    configs.append((f"heapwatch (glibc), {compare_shim}", {"LD_PRELOAD": compare_shim}, NONE,
                    True, None))
configs += [
    (JE, {"LD_PRELOAD": je}, JE, False, None),
    ("jemalloc prof:true,lg_prof_sample:19", {"LD_PRELOAD": je,
     "MALLOC_CONF": "prof:true,lg_prof_sample:19"}, JE, False, None),
    ("heapwatch, R = 512 KiB (over jemalloc)", {"LD_PRELOAD": f"{shim}:{je}"}, JE, True, None),
    (TC, {"LD_PRELOAD": tc}, TC, False, None),
    ("tcmalloc TCMALLOC_SAMPLE_PARAMETER=524288", {"LD_PRELOAD": tc,
     "TCMALLOC_SAMPLE_PARAMETER": "524288"}, TC, False, None),
    ("heapwatch, R = 512 KiB (over tcmalloc)", {"LD_PRELOAD": f"{shim}:{tc}"}, TC, True, None),
    ("heaptrack (glibc; traces the first process only)", {}, NONE, False, "heaptrack"),
]

def run_once(prog, config, wrap_valgrind, tag):
    """Runs one program under one configuration; returns (stderr, exes said hello)."""
    name, extra, _, uses_hw, wrap = config
    d = tempfile.mkdtemp(dir=tmp, prefix=f"{tag}-")
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONHASHSEED"] = "0"  # else each run hashes, and so allocates, differently
    sink = None
    if uses_hw:
        sink = Sink(os.path.join(d, "hw.sock"))
        env["HEAPWATCH_SOCKET"] = sink.path
    argv = prog[1](d)
    if wrap == "heaptrack":
        argv = ["heaptrack", "-o", os.path.join(d, "ht")] + argv
    if wrap_valgrind:
        argv = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                f"--callgrind-out-file={d}/cg.%p"] + argv
    p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, cwd=d)
    if p.returncode != 0 or "cannot be preloaded" in p.stderr:
        sys.exit(f"{prog[0]} / {name}: exit {p.returncode}\n{p.stderr[-3000:]}")
    exes = []
    if sink:
        time.sleep(0.05)
        sink.close()
        exes = sorted(sink.exes)
    shutil.rmtree(d, ignore_errors=True)
    return p.stderr, exes

hellos = {}
instructions = {}
if mode in ("all", "callgrind"):
    work = [(p, c) for p in programs for c in configs if c[4] is None]
    def counted(pc):
        prog, config = pc
        err, exes = run_once(prog, config, True, "cg")
        counts = [int(x) for x in re.findall(r"==\d+== Collected : (\d+)", err)]
        if not counts:
            sys.exit(f"{prog[0]} / {config[0]}: no callgrind totals\n{err[-2000:]}")
        print(f"callgrind {prog[0]} / {config[0]}: {sum(counts):,} in {len(counts)} processes",
              file=sys.stderr)
        return pc, sum(counts), len(counts), exes
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for (prog, config), total, procs, exes in pool.map(counted, work):
            instructions[(prog[0], config[0])] = (total, procs)
            if exes:
                hellos[(prog[0], config[0])] = exes

cpu = {}
if mode in ("all", "cpu"):
    for r in range(rounds):
        for prog in programs:
            for config in configs:
                with ChildUsage() as used:
                    t0 = time.monotonic()
                    _, exes = run_once(prog, config, False, "cpu")
                    wall = time.monotonic() - t0
                cpu.setdefault((prog[0], config[0]), []).append((used.cpu, wall))
                if exes:
                    hellos[(prog[0], config[0])] = exes  # native runs' names, not valgrind's
        print(f"cpu round {r + 1}/{rounds} done", file=sys.stderr)

load_end = os.getloadavg()
print(f"bench/shim/run_programs.sh, {started}, load average (1/5/15 min) at start "
      + "/".join(f"{x:.1f}" for x in load_start) + ", at end "
      + "/".join(f"{x:.1f}" for x in load_end))
for prog in programs:
    print()
    print(f"**{prog[0]}**")
    print()
    cols = ["configuration"]
    if instructions:
        cols += ["instructions (processes)", "vs same allocator"]
    if cpu:
        cols += [f"CPU s (median of {rounds})", "wall s (median)",
                 "CPU vs same allocator (median of per-round ratios, min-max)"]
    cols += ["said hello"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for name, _, ref, _, wrap in configs:
        key, rkey = (prog[0], name), (prog[0], ref)
        row = [name]
        if instructions:
            if key in instructions:
                n, procs = instructions[key]
                row += [f"{n:,} ({procs})", f"{n / instructions[rkey][0]:.3f}x"]
            else:
                row += ["not run under callgrind", ""]
        if cpu:
            runs, refs = cpu[key], cpu[rkey]
            ratios = sorted(c / rc for (c, _), (rc, _) in zip(runs, refs))
            row += [f"{statistics.median(c for c, _ in runs):.3f}",
                    f"{statistics.median(w for _, w in runs):.3f}",
                    f"{statistics.median(ratios):.3f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"]
        exes = hellos.get(key)
        row.append(", ".join(exes) if exes else "")
        print("| " + " | ".join(row) + " |")
shutil.rmtree(tmp, ignore_errors=True)
PY
