#!/usr/bin/env bash
# How long the demo service takes to exit on SIGTERM once it has leaked
# about 1 GB, without and with the shim (connected to a real heapwatchd).
# Exit here means: workers joined, ~1M leaked blocks freed by SessionStore's
# destructor, library destructors (the shim's exit flush, at most 1 s) run.
#
#   bench/shim/run_demo_exit.sh [BUILD_DIR] [LEAK_BYTES=1024] [RPS=200000]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/require.sh"
build=${1:-$here/../../build-shim}
leak=${2:-1024}
rps=${3:-200000}
demo=$build/demo/heapwatch-demo
shim=$build/preload/libheapwatch.so
heapwatchd=$build/collector/heapwatchd
require_built "" "$demo" "$shim" "$heapwatchd"
tmp=$(mktemp -d /tmp/hw-demo-exit.XXXXXX)
"$heapwatchd" --socket "$tmp/hw.sock" --http 127.0.0.1:0 --data-dir "$tmp/data" \
  --ui-dir "$here/../../ui" >"$tmp/heapwatchd.log" 2>&1 &
collector=$!
trap 'kill $collector 2>/dev/null; wait $collector 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [[ -S $tmp/hw.sock ]] && break; sleep 0.1; done

run() {  # label, then environment assignments
  local label=$1; shift
  env "$@" "$demo" --threads 4 --rps "$rps" --leak-bytes "$leak" >/dev/null 2>&1 &
  local pid=$! rss=0
  while :; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null) || { echo "$label: died" >&2; return 1; }
    (( rss >= 1000000 )) && break
    sleep 0.2
  done
  local t0 t1
  t0=$(date +%s.%N)
  kill -TERM "$pid"
  wait "$pid" || true
  t1=$(date +%s.%N)
  printf '| %s | %d MB | %.2f s |\n' "$label" $((rss / 1024)) "$(echo "$t1 - $t0" | bc)"
}
echo "demo --threads 4 --rps $rps --leak-bytes $leak, SIGTERM at RSS >= 1 GB; load average $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| configuration | RSS at SIGTERM | SIGTERM to exit |"
echo "|---|---|---|"
for round in 1 2 3; do
  run "no shim (round $round)"
  run "shim, R = 512 KiB, heapwatchd connected (round $round)" LD_PRELOAD="$shim" HEAPWATCH_SOCKET="$tmp/hw.sock"
  run "shim, R = 4096, heapwatchd connected (round $round)" LD_PRELOAD="$shim" HEAPWATCH_SOCKET="$tmp/hw.sock" HEAPWATCH_SAMPLE_BYTES=4096
done
