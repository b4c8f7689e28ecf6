#!/usr/bin/env bash
# The main job, in one command on a fresh Debian 12 machine (as root):
# installs the dependencies, builds, starts heapwatchd and the demo service
# under the shim (leaking a little on every request), and prints the UI's URL.
# Ctrl-C stops both.
#
#   scripts/demo.sh [--leak-bytes B] [--seconds S]   (defaults: 2048, forever)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
leak_bytes=2048
seconds=0
while (($#)); do
  case $1 in
    --leak-bytes) leak_bytes=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) echo "usage: scripts/demo.sh [--leak-bytes B] [--seconds S]" >&2; exit 2 ;;
  esac
done

HEAPWATCH_DEPS=build scripts/install-deps.sh
scripts/build.sh

port=${HEAPWATCH_DEMO_PORT:-7070}
run_dir=$(mktemp -d /tmp/heapwatch-demo.XXXXXX)
socket=$run_dir/heapwatch.sock
cleanup() {
  kill "${demo_pid:-}" "${collector_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "heapwatch demo stopped; logs and snapshots are in $run_dir"
}
trap cleanup EXIT INT TERM

build/collector/heapwatchd --socket "$socket" --http "127.0.0.1:$port" \
  --data-dir "$run_dir/data" --ui-dir "$root/ui" 2>"$run_dir/heapwatchd.log" &
collector_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$collector_pid" 2>/dev/null || { cat "$run_dir/heapwatchd.log" >&2; exit 1; }
  sleep 0.1
done

LD_PRELOAD=$root/build/preload/libheapwatch.so HEAPWATCH_SOCKET=$socket \
  build/demo/heapwatch-demo --leak-bytes "$leak_bytes" --seconds "$seconds" &
demo_pid=$!

cat <<MSG

  heapwatch is running.
    UI:        http://127.0.0.1:$port/
    processes: curl http://127.0.0.1:$port/api/v1/processes
    pprof:     go tool pprof -http=: 'http://127.0.0.1:$port/debug/pprof/heap?pid=$demo_pid'
    metrics:   curl http://127.0.0.1:$port/metrics
  The demo (pid $demo_pid) leaks $leak_bytes bytes per request in
  SessionStore::RememberSession. Press Ctrl-C to stop.

MSG
wait "$demo_pid" || true
