// Threads with a cancellation pending from their start that only allocate:
// malloc and free are not cancellation points, so each runs to its end and
// none is cancelled. Under the shim, libunwind's check of an address reads a
// pipe with read(), which is one, and a thread was cancelled inside its
// first sample: the malloc never returned, and the thread's mark inside
// libunwind stayed up, so the fork after it waited for ever. THREADS threads
// in turn, then a fork whose child allocates and exits.
//   shim_cancel [THREADS=50]
// Prints "cancelled=C hung=H failed=F"; exits 1 unless all three are 0.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fork_child.h"

namespace {

void* Allocate(void*) {
  for (unsigned i = 0; i < 2000; ++i) {
    void* p = malloc(32 + i % 512);
    if (p != nullptr) memset(p, 1, 8);
    asm volatile("" : : "r"(p) : "memory");
    free(p);
  }
  return nullptr;
}

int ChildWork() { return AllocateAndFree(1, 100); }

}  // namespace

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 50;
  if (threads < 1) return 2;
  int cancelled = 0;
  for (int i = 0; i < threads; ++i) {
    pthread_t thread;
    if (pthread_create(&thread, nullptr, Allocate, nullptr) != 0) return 2;
    pthread_cancel(thread);
    void* result = nullptr;
    pthread_join(thread, &result);
    if (result == PTHREAD_CANCELED) ++cancelled;
  }
  ChildOutcome child = ForkAndWait(ChildWork);
  int hung = child == kChildHung, failed = child == kChildFailed;
  printf("cancelled=%d hung=%d failed=%d\n", cancelled, hung, failed);
  return cancelled || hung || failed ? 1 : 0;
}
