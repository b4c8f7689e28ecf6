#!/bin/sh
# Builds every variant of the symbolizer fixture the unit tests need, with the
# project's compiler and binutils, into OUT_DIR. Flags are spelled out here
# (not taken from the build type) because each variant is about its flags.
#
# usage: build_fixtures.sh OUT_DIR SRC_DIR CXX OBJCOPY STRIP
set -eu
out=$1 src=$2 cxx=$3 objcopy=$4 strip=$5
mkdir -p "$out"
cd "$out"
build() {  # build NAME SOURCE FLAGS...
  name=$1 source=$2
  shift 2
  "$cxx" -std=c++17 -Wl,--build-id=sha1 "$@" -o "$name.tmp" "$src/$source" -ldl
  mv "$name.tmp" "$name"
}

# Debug info, no optimization; PIE (the toolchain's default).
build fixture_g fixture.cc -O0 -g -fPIE -pie
# Optimized with debug info: the always_inline chain becomes inlined frames.
build fixture_o2 fixture.cc -O2 -g -fPIE -pie
# No debug info: names from .symtab only.
build fixture_nog fixture.cc -O0 -g0 -fPIE -pie
# Non-PIE executable (load bias 0).
build fixture_nopie fixture.cc -O0 -g -fno-pie -no-pie
# Same source, different code: a different build-id at the same path.
build fixture_g_v2 fixture.cc -O0 -g -fPIE -pie -DHWSYM_VARIANT=2
# Stripped of everything but .dynsym; -rdynamic exports the functions there.
build fixture_stripped fixture.cc -O2 -g0 -fPIE -pie -rdynamic
"$strip" --strip-all fixture_stripped
# Separate debug info: fixture_split (stripped, with .gnu_debuglink) and
# fixture_split.debug (what objcopy --only-keep-debug kept).
build fixture_split fixture.cc -O2 -g -fPIE -pie
"$objcopy" --only-keep-debug fixture_split fixture_split.debug
"$strip" --strip-all fixture_split
"$objcopy" --add-gnu-debuglink=fixture_split.debug fixture_split
# A no-build-id module with separate debug info: found by debuglink + CRC.
"$cxx" -std=c++17 -Wl,--build-id=none -O0 -g -o fixture_nobuildid "$src/fixture.cc" -ldl
"$objcopy" --only-keep-debug fixture_nobuildid fixture_nobuildid.debug
"$strip" --strip-all fixture_nobuildid
"$objcopy" --add-gnu-debuglink=fixture_nobuildid.debug fixture_nobuildid
# The dlopen'ed shared library, with debug info, and a stripped copy.
build libhwsym_plugin.so plugin.cc -O2 -g -fPIC -shared
cp libhwsym_plugin.so libhwsym_plugin_stripped.so
"$strip" --strip-all libhwsym_plugin_stripped.so
touch fixtures.stamp
