#!/usr/bin/env bash
# The whole test suite, in one command on a fresh Debian 12 machine (as root):
# installs the dependencies, builds, and runs every suite; exits non-zero on
# any failure.
#
# Suites and their switches (1 = on):
#   unit + end-to-end (always)      GoogleTest units, real processes under the
#                                   real shim against a real heapwatchd
#   HEAPWATCH_UI_TESTS=1            headless Chromium against the real UI
#   HEAPWATCH_TEST_SANITIZE=1       ASan+UBSan build of the collector and
#                                   symbolizer, their unit tests and the thin
#                                   end-to-end path
#   HEAPWATCH_TEST_FUZZ=<seconds>   libFuzzer on the frame decoder (0: off)
#   HEAPWATCH_TEST_OLD_GLIBC=1      the shim under Debian 11's glibc 2.31, in
#                                   a root made once with debootstrap (~3 min,
#                                   from deb.debian.org), build/old-glibc-root
# Defaults: all on, fuzzing for 30 s. CI runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export HEAPWATCH_UI_TESTS=${HEAPWATCH_UI_TESTS:-1}
sanitize=${HEAPWATCH_TEST_SANITIZE:-1}
fuzz_seconds=${HEAPWATCH_TEST_FUZZ:-30}
old_glibc=${HEAPWATCH_TEST_OLD_GLIBC:-1}
jobs=$(nproc)
failed=()

step() { printf '\n==== %s ====\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

step "build"
BUILD_DIR=build scripts/build.sh -DBUILD_TESTING=ON

if [[ $old_glibc == 1 ]]; then
  step "a Debian 11 root for the shim's old-glibc tests"
  if scripts/old-glibc-root.sh "$PWD/build/old-glibc-root"; then
    export HEAPWATCH_OLD_GLIBC_ROOT=$PWD/build/old-glibc-root
  else
    failed+=("old-glibc-root")
  fi
fi

step "unit and end-to-end tests"
if ! (cd build && ctest --output-on-failure -j"$jobs" --timeout 600); then
  failed+=("ctest")
fi

if [[ $sanitize == 1 ]]; then
  step "ASan+UBSan: collector, symbolizer, their units and the thin path"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=ON \
    -DHEAPWATCH_SANITIZE=ON -DHEAPWATCH_BENCH=OFF >/dev/null
  # Only what the sanitizers cover: the shim lives in other processes and is
  # built plain (it is needed by the thin path test).
  cmake --build build-asan -j"$jobs" --target heapwatchd collector_tests \
    heapwatch_symbolizer_test heapwatch_preload heapwatch_demo
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  if ! (cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 600 -R '^(collector|symbolizer)\.' &&
        ctest --output-on-failure --timeout 600 -R '^e2e_thin_path$'); then
    failed+=("sanitizers")
  fi
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if [[ $fuzz_seconds != 0 ]]; then
  step "libFuzzer: frame decoder, ${fuzz_seconds}s"
  if ! scripts/fuzz.sh "$fuzz_seconds"; then
    failed+=("fuzz")
  fi
fi

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test suites passed"
