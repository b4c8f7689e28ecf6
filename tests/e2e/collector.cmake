# The collector's end-to-end tests (issue 4): the real heapwatchd over its real
# socket and HTTP port, real programs under the real shim, real `go tool
# pprof` and `promtool`. test_collector_support.py holds their helpers.
heapwatch_e2e_test(NAME collector_pprof TIMEOUT 180 LABELS collector)
heapwatch_e2e_test(NAME collector_metrics TIMEOUT 120 LABELS collector)
heapwatch_e2e_test(NAME collector_ingest TIMEOUT 180 LABELS collector)
heapwatch_e2e_test(NAME collector_security TIMEOUT 180 LABELS collector)
heapwatch_e2e_test(NAME collector_snapshots TIMEOUT 180 LABELS collector)
# Measures heapwatchd's peak RSS: run alone so other tests' load does not
# slow it into timeouts.
heapwatch_e2e_test(NAME collector_flood TIMEOUT 300 LABELS collector RUN_SERIAL)
