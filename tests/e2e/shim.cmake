# The shim's end-to-end tests (tests/e2e/test_shim_*.py; test_shim_support.py
# holds their helpers). Most need no collector: a small Python receiver in
# the test decodes the wire stream; test_shim_collector.py uses heapwatchd.
heapwatch_e2e_test(NAME shim_api TIMEOUT 240 LABELS shim)
heapwatch_e2e_test(NAME shim_fork TIMEOUT 240 LABELS shim)
heapwatch_e2e_test(NAME shim_allocators TIMEOUT 240 LABELS shim)
heapwatch_e2e_test(NAME shim_reconnect TIMEOUT 120 LABELS shim)
heapwatch_e2e_test(NAME shim_collector TIMEOUT 120 LABELS shim)
# Module maps after dlopen/dlclose (shim_dlopen and its two plugins), and
# short-lived processes delivering their whole stream before they exit.
heapwatch_e2e_test(NAME shim_modules TIMEOUT 120 LABELS shim)
heapwatch_e2e_test(NAME shim_short_lived TIMEOUT 180 LABELS shim)
# Threads past HEAPWATCH_UNWIND_CACHES step with unw_step: the same stacks.
heapwatch_e2e_test(NAME shim_threads TIMEOUT 120 LABELS shim)
# free() on the live table's fine and coarse filters: every free still seen.
heapwatch_e2e_test(NAME shim_filters TIMEOUT 120 LABELS shim)
# Programs of a Debian 11 image (glibc 2.31: libpthread and libdl apart from
# libc) under the shim, in a chroot; skips without HEAPWATCH_OLD_GLIBC_ROOT
# (scripts/test.sh makes one: scripts/old-glibc-root.sh).
heapwatch_e2e_test(NAME shim_old_glibc TIMEOUT 120 LABELS shim)
