// Threads that ask for their own attributes first thing, as the JVM's and
// Rust's std's do at every thread's start: pthread_getattr_np reallocs while
// it holds the thread's own lock, so at R = 1 that realloc is each thread's
// first sample. The shim used to call pthread_getattr_np from that sample to
// find the thread's stack, and the thread waited for its own lock for good.
// Prints how many threads found their stacks.
//   shim_thread_attrs [THREADS=16]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

void* Body(void*) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return nullptr;
  void* addr = nullptr;
  size_t size = 0;
  int rc = pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  // Then some allocations of its own, sampled with stacks like any.
  void* blocks[8];
  for (int i = 0; i < 8; ++i) blocks[i] = malloc(1000 + static_cast<size_t>(i));
  for (void* b : blocks) free(b);
  return rc == 0 && size > 0 ? addr : nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 16;
  int known = 0;
  for (int i = 0; i < threads; ++i) {
    pthread_t t;
    void* stack = nullptr;
    if (pthread_create(&t, nullptr, Body, nullptr) != 0 || pthread_join(t, &stack) != 0) return 1;
    known += stack != nullptr;
  }
  printf("%d of %d threads found their stacks\n", known, threads);
  return known == threads ? 0 : 1;
}
