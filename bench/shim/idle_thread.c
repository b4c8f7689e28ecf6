// libshim_idle_thread.so: preloaded, it starts one thread that sleeps for the
// process's life and does nothing else. The shim's sender is such a thread
// most of the time, and any second thread switches glibc malloc from its
// single-thread shortcuts to its locked paths (arena locks, atomic fastbin
// updates): this library measures that part of the shim's cost on its own.
#include <pthread.h>
#include <unistd.h>

static void* Sleep(void* arg) {
  for (;;) pause();
  return arg;
}

__attribute__((constructor)) static void StartIdleThread(void) {
  pthread_t t;
  if (pthread_create(&t, 0, Sleep, 0) == 0) pthread_detach(t);
}
