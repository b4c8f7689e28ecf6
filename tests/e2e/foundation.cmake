heapwatch_e2e_test(NAME thin_path TIMEOUT 120)
