#!/usr/bin/env bash
# A Debian 11 root filesystem (glibc 2.31, older than the 2.34 that merged
# libpthread and libdl into libc), for tests/e2e/test_shim_old_glibc.py:
# programs of an older application image, run under the shim in a chroot.
# minbase, plus libunwind8 (the image's own libunwind: the shim's copy needs
# glibc 2.34). Made once, in DIR; ~3 minutes and ~250 MB. Needs root and
# Debian's archive (debootstrap, deb.debian.org).
#
#   scripts/old-glibc-root.sh DIR
set -euo pipefail
root=${1:?usage: scripts/old-glibc-root.sh DIR}
if [[ -f $root/.heapwatch-root-complete ]]; then
  exit 0
fi
rm -rf "$root.partial"
mkdir -p "$(dirname "$root")"
if ! debootstrap --variant=minbase --include=libunwind8 bullseye "$root.partial" \
    http://deb.debian.org/debian >"$root.log" 2>&1; then
  echo "old-glibc-root: debootstrap failed; its log: $root.log" >&2
  tail -5 "$root.log" >&2
  exit 1
fi
rm -rf "$root"
mv "$root.partial" "$root"
touch "$root/.heapwatch-root-complete"
echo "old-glibc-root: Debian 11 in $root"
