#!/usr/bin/env bash
# Installs everything heapwatch needs to build, run and test, from Debian 12's
# packages. Idempotent and non-interactive; run as root.
#
#   scripts/install-deps.sh            build + run + test dependencies
#   HEAPWATCH_DEPS=build scripts/...   only what the build needs
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root (apt-get)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

build_pkgs=(
  build-essential cmake pkg-config git
  # Boost 1.81 (not the default 1.74) for unordered_flat_map; Asio/Beast are
  # header-only; program_options parses the daemon's flags.
  libboost1.81-dev libboost-program-options1.81-dev libboost-url1.81-dev
  nlohmann-json3-dev
  # The nongnu libunwind. The image may ship LLVM's libunwind-14-dev, which
  # provides the same virtual name but a different ABI; naming the real package
  # makes apt replace it.
  libunwind-dev
  libjemalloc-dev libgoogle-perftools-dev
  libdw-dev libelf-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
test_pkgs=(
  curl python3 procps
  golang-go                 # go tool pprof reads our profiles
  prometheus                # promtool checks /metrics
  prometheus-alertmanager   # a real Alertmanager receives alerts
  clang libclang-rt-14-dev  # libFuzzer + sanitizers
  binutils elfutils         # strip, objcopy, eu-readelf for symbolizer fixtures
  heaptrack                 # a peer we benchmark against
  valgrind sqlite3          # bench/shim: callgrind's instruction counts; a real program
  musl-tools                # musl-gcc: a program built as for an Alpine image
  debootstrap               # a Debian 11 root (glibc 2.31) for the shim: scripts/old-glibc-root.sh
  chromium                  # headless UI tests (driven by playwright-core)
)
# Tools that the machine image may ship from elsewhere: install Debian's
# package only when the command is missing.
declare -A tool_pkgs=([node]=nodejs [npm]=npm [kubectl]=kubectl)

pkgs=("${build_pkgs[@]}")
if [[ ${HEAPWATCH_DEPS:-all} != build ]]; then
  pkgs+=("${test_pkgs[@]}")
  for tool in "${!tool_pkgs[@]}"; do
    command -v "$tool" >/dev/null || pkgs+=("${tool_pkgs[$tool]}")
  done
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all ${#pkgs[@]} packages present"
