# Kubernetes manifests, Prometheus rules and the Dockerfile (issue 9): see
# test_k8s.py. Needs node/npm (tests/k8s), kubectl, promtool and apt-cache;
# the install checks use this build tree.
heapwatch_e2e_test(NAME k8s TIMEOUT 600 LABELS k8s)
