#!/usr/bin/env bash
# Fuzzes the collector's frame decoder with libFuzzer (clang, ASan+UBSan).
#   scripts/fuzz.sh [SECONDS]     default 30; longer runs: scripts/fuzz.sh 3600
# The corpus is kept in build-fuzz/corpus between runs; the fuzzer writes its
# seeds (valid sessions) there first (HEAPWATCH_FUZZ_SEEDS).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF -DHEAPWATCH_BENCH=OFF \
  -DHEAPWATCH_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target frame_decoder_fuzzer
mkdir -p build-fuzz/corpus
HEAPWATCH_FUZZ_SEEDS=build-fuzz/corpus build-fuzz/collector/frame_decoder_fuzzer build-fuzz/corpus -max_total_time="$seconds" \
  -max_len=65536 -print_final_stats=1 2>&1 | tail -15
