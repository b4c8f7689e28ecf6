#!/usr/bin/env python3
"""Alert lead time before the OOM kill, and false alarms, for heapwatch.

Runs the demo service under the shim in a real memory-limited cgroup (root
needed), with a fresh heapwatchd per run at its default alert settings:

  leak scenarios      the demo leaks from its first request until the kernel
                      OOM-kills it; measured: when the first alert fired, as a
                      share of the time from leak start to kill still ahead
                      ("lead share"; target >= 0.5), and whether the alert
                      named the leaking function (SessionStore::RememberSession).
  non-leak scenarios  churn, a cache that fills and plateaus, a sawtooth; each
                      runs for --seconds; any alert that fires is a false alarm.

The script also samples the cgroup's usage itself every 0.5 s and replays the
classic Prometheus rule on that series:

  predict_linear(container_memory_working_set_bytes[1h], 3600) > limit

as Prometheus would evaluate it with a 15 s scrape and evaluation interval
(least squares over the samples of the last hour, extrapolated an hour ahead),
with `for: 0s` and with the common `for: 5m`. (Working set is usage minus
inactive file cache; the demo has next to no file cache, so usage is used.)

  sudo python3 bench/analysis/lead_time.py --build-dir build-an --runs 3

Prints a Markdown table and writes every run's figures as JSON (--out).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
from cgroup_util import MemoryCgroup  # noqa: E402

LEAK_SCENARIOS = {
    "leak 4 MB/s": ["--threads", "2", "--rps", "1000", "--leak-bytes", "4096"],
    "leak 2 MB/s": ["--threads", "2", "--rps", "500", "--leak-bytes", "4096"],
}
NON_LEAK_SCENARIOS = {
    "churn": ["--threads", "2", "--rps", "2000"],
    "plateau (20k-entry cache)": ["--threads", "2", "--rps", "1000", "--cache-entries", "20000"],
    "plateau (100k-entry cache)": ["--threads", "2", "--rps", "2000", "--cache-entries", "100000"],
    "sawtooth (6 MB every 3 s)": ["--threads", "2", "--rps", "1000", "--sawtooth-bytes", "2048"],
}


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def classic_rule(samples, limit, start, end, scrape=15.0, for_seconds=0.0):
    """First time predict_linear(usage[1h], 3600) > limit held `for_seconds`,
    evaluated every `scrape` seconds on the usage sampled every `scrape`."""
    scraped, next_t = [], start
    for t, v in samples:
        if t >= next_t:
            scraped.append((t, v))
            next_t += scrape
    pending_since = None
    for i in range(len(scraped)):
        t = scraped[i][0]
        window = [(x, y) for x, y in scraped[:i + 1] if x > t - 3600]
        firing = False
        if len(window) >= 2:
            n = len(window)
            mx = sum(x for x, _ in window) / n
            my = sum(y for _, y in window) / n
            sxx = sum((x - mx) ** 2 for x, _ in window)
            if sxx > 0:
                slope = sum((x - mx) * (y - my) for x, y in window) / sxx
                firing = my + slope * (t + 3600 - mx) > limit
        if firing:
            pending_since = t if pending_since is None else pending_since
            if t - pending_since >= for_seconds:
                return t
        else:
            pending_since = None
    return None


def run_once(args, name, demo_args, leak):
    limit = args.limit_mib << 20
    work = tempfile.mkdtemp(prefix="heapwatch-bench-")
    port = free_port()
    sock = os.path.join(work, "hw.sock")
    log = open(os.path.join(work, "heapwatchd.log"), "wb")
    collector = subprocess.Popen([args.heapwatchd, "--socket", sock, "--http", f"127.0.0.1:{port}",
                                  "--data-dir", os.path.join(work, "data")] + args.collector_arg,
                                 stdout=log, stderr=subprocess.STDOUT)
    cg = None
    try:
        for _ in range(100):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        cg = MemoryCgroup(limit, prefix="heapwatch-bench")
        cmd = [args.demo] + demo_args + ([] if leak else ["--seconds", str(args.seconds)])
        start = time.time()
        demo = cg.popen(cmd, env={"LD_PRELOAD": args.shim, "HEAPWATCH_SOCKET": sock},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                try:
                    samples.append((time.time(), cg.usage()))
                except OSError:
                    pass
                time.sleep(0.5)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = demo.wait(timeout=args.seconds * 4 if not leak else 600)
        end = time.time()
        done.set()
        sampler.join()
        time.sleep(1.5)  # the collector notices the exit and resolves
        alerts = [a for a in get_json(port, "/api/v1/alerts")["alerts"]
                  if a["pid"] == demo.pid and a["started_at"] is not None]
        first = min(alerts, key=lambda a: a["started_at"]) if alerts else None
        result = {"scenario": name, "leak": leak, "rc": rc, "start": start, "end": end,
                  "oom_kills": cg.oom_kills(), "alerts": alerts,
                  "peak_usage": max((v for _, v in samples), default=0)}
        if leak:
            killed = rc == -9
            span = end - start
            result["killed"] = killed
            result["time_to_kill"] = span
            if first:
                result["first_alert_rule"] = first["rule"]
                result["first_alert_after"] = first["started_at"] - start
                result["lead_share"] = (end - first["started_at"]) / span
                result["named"] = "RememberSession" in (first.get("function") or "")
            for label, for_s in (("classic_for0", 0.0), ("classic_for5m", 300.0)):
                t = classic_rule(samples, limit, start, end, for_seconds=for_s)
                result[label] = None if t is None else (end - t) / span
        else:
            result["false_alarms"] = len(alerts)
            for label, for_s in (("classic_for0", 0.0), ("classic_for5m", 300.0)):
                result[label] = classic_rule(samples, limit, start, end, for_seconds=for_s) is not None
        return result
    finally:
        if cg:
            cg.remove()
        collector.terminate()
        try:
            collector.wait(10)
        except subprocess.TimeoutExpired:
            collector.kill()
        log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def fmt_share(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return "never"
    text = f"{statistics.median(vals):.2f} (min {min(vals):.2f})"
    missing = len(values) - len(vals)
    return text + (f", {missing} never" if missing else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60, help="length of each non-leak run")
    ap.add_argument("--limit-mib", type=int, default=128)
    ap.add_argument("--only", help="run scenarios whose name contains this")
    ap.add_argument("--out", default="lead_time_results.json")
    ap.add_argument("--keep", action="store_true", help="keep each run's folder")
    ap.add_argument("--collector-arg", action="append", default=[],
                    help="extra heapwatchd flag (repeat); default: the shipped alert settings")
    args = ap.parse_args()
    b = os.path.abspath(args.build_dir)
    args.heapwatchd = os.path.join(b, "collector", "heapwatchd")
    args.shim = os.path.join(b, "preload", "libheapwatch.so")
    args.demo = os.path.join(b, "demo", "heapwatch-demo")
    for path in (args.heapwatchd, args.shim, args.demo):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: build heapwatchd, heapwatch_preload and heapwatch_demo first")
    reason = MemoryCgroup.unavailable_reason()
    if reason:
        sys.exit("cannot run: " + reason)

    results = []
    scenarios = [(n, a, True) for n, a in LEAK_SCENARIOS.items()] + \
                [(n, a, False) for n, a in NON_LEAK_SCENARIOS.items()]
    for name, demo_args, leak in scenarios:
        if args.only and args.only not in name:
            continue
        for i in range(args.runs):
            r = run_once(args, name, demo_args, leak)
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "alerts"}), file=sys.stderr, flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)

    print(f"| scenario ({args.limit_mib} MiB limit) | runs | killed | time to kill, s | heapwatch: first alert, "
          "s after start | heapwatch lead share | named the leak | classic rule lead share (for 0s) | "
          "classic (for 5m) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in LEAK_SCENARIOS:
        rs = [r for r in results if r["scenario"] == name]
        if not rs:
            continue
        after = [r.get("first_alert_after") for r in rs if r.get("first_alert_after") is not None]
        first = f"{statistics.median(after):.1f}" if after else "never"
        print(f"| {name} | {len(rs)} | {sum(r['killed'] for r in rs)} | "
              f"{statistics.median(r['time_to_kill'] for r in rs):.1f} | {first} | ", end="")
        print(f"{fmt_share([r.get('lead_share') for r in rs])} | {sum(bool(r.get('named')) for r in rs)}/{len(rs)} | "
              f"{fmt_share([r['classic_for0'] for r in rs])} | {fmt_share([r['classic_for5m'] for r in rs])} |")
    print()
    print("| scenario (no leak) | runs | ran to the end | heapwatch false alarms | classic rule false alarms "
          "(for 0s) | classic (for 5m) |")
    print("|---|---|---|---|---|---|")
    for name in NON_LEAK_SCENARIOS:
        rs = [r for r in results if r["scenario"] == name]
        if not rs:
            continue
        rules = sorted({a["rule"] for r in rs for a in r["alerts"]})
        print(f"| {name} | {len(rs)} | {sum(r['rc'] == 0 for r in rs)} | "
              f"{sum(r['false_alarms'] > 0 for r in rs)} runs" + (f" ({', '.join(rules)})" if rules else "") +
              f" | {sum(r['classic_for0'] for r in rs)} runs | {sum(r['classic_for5m'] for r in rs)} runs |")


if __name__ == "__main__":
    main()
