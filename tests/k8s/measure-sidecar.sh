#!/bin/bash
# Measures heapwatchd's CPU and memory while it serves N heapwatch-demo
# processes under the shim: the basis of the sidecar's requests and limits in
# k8s/components/heapwatch/sidecar-patch.yaml (k8s/README.md, "Sizing").
#
#   tests/k8s/measure-sidecar.sh BUILD_DIR [SECONDS] [PROCESSES] [RPS] [LEAK_BYTES]
#   HEAPWATCH_SAMPLE_BYTES=4096 tests/k8s/measure-sidecar.sh build
set -euo pipefail
build=$(realpath "$1"); secs=${2:-60}; n=${3:-1}; rps=${4:-2000}; leak=${5:-1024}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/run" "$work/data"; printf measure-token > "$work/token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$build/collector/heapwatchd" --socket "$work/run/hw.sock" --http "127.0.0.1:$port" \
  --data-dir "$work/data" --token-file "$work/token" --memory-limit 128Mi \
  --ui-dir "$src/ui" > "$work/heapwatchd.log" 2>&1 &
hw=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/readyz" > /dev/null && break; sleep 0.1; done
demos=()
for _ in $(seq "$n"); do
  LD_PRELOAD="$build/preload/libheapwatch.so" HEAPWATCH_SOCKET="$work/run/hw.sock" \
    "$build/demo/heapwatch-demo" --rps "$rps" --leak-bytes "$leak" --seconds "$secs" > /dev/null 2>&1 &
  demos+=($!)
done
ticks() { awk '{print $14 + $15}' "/proc/$hw/stat"; }
t0=$(ticks)
for _ in $(seq "$secs"); do
  sleep 1   # scrape like an impatient Prometheus
  curl -sf -H "Authorization: Bearer measure-token" "127.0.0.1:$port/metrics" > /dev/null
done
t1=$(ticks)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$hw/status")
wait "${demos[@]}" || true
kill "$hw"; wait "$hw" || true
hz=$(getconf CLK_TCK)
echo "processes=$n rps=$rps leak=$leak sample_bytes=${HEAPWATCH_SAMPLE_BYTES:-524288} seconds=$secs" \
     "cpu_millicores=$(( (t1 - t0) * 1000 / hz / secs )) peak_rss_kib=$hwm"
