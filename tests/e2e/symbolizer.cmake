# The symbolizer through the collector (issue 5): names, inlined frames, a
# dlopen'ed library, pprof, and a binary replaced on disk.
heapwatch_e2e_test(NAME symbolizer TIMEOUT 120)
