# Growth analysis, leak suspects, alerts and evidence (issue 7). Both tests use a
# real memory cgroup (they skip, saying why, where one cannot be made) and run
# alone: an OOM kill and a tight limit are sensitive to a busy machine.
heapwatch_e2e_test(NAME oom TIMEOUT 300 LABELS analysis RUN_SERIAL)
heapwatch_e2e_test(NAME alertmanager TIMEOUT 240 LABELS analysis RUN_SERIAL)
