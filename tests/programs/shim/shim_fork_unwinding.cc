// Forks while other threads are inside libunwind. Under the shim with
// HEAPWATCH_UNWIND_CACHES=0 every sample steps with unw_step, which holds
// libunwind's global cache lock (and glibc's dl_iterate_phdr lock) for most
// of its time; a child forked then inherits those locks held by threads it
// does not have. Each child allocates (so it samples) and exits; a child
// that is not done within 5 s counts as hung and is killed (SIGKILL: a
// thread waiting for libunwind's lock has every signal blocked).
//   shim_fork_unwinding [THREADS=3] [FORKS=40]
// Prints "forks=N hung=H failed=F" and exits 1 if a child hung or failed.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "fork_child.h"

namespace {

std::atomic<bool> g_stop{false};

__attribute__((noinline)) void Churn(unsigned seed) {
  while (!g_stop.load(std::memory_order_relaxed)) {
    seed = seed * 1103515245u + 12345u;
    size_t bytes = 64 + (seed >> 8) % 8192;
    void* p = malloc(bytes);
    if (p != nullptr) memset(p, 1, 16);
    asm volatile("" ::: "memory");
    free(p);
  }
}

__attribute__((noinline)) int ChildWork() {
  void* blocks[256];
  for (int round = 0; round < 8; ++round) {
    for (void*& b : blocks) {
      b = malloc(4096);
      if (b != nullptr) memset(b, 2, 16);
    }
    for (void* b : blocks) free(b);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 3;
  int forks = argc > 2 ? atoi(argv[2]) : 40;
  if (threads < 1 || threads > 64 || forks < 1) return 2;
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) workers.emplace_back(Churn, 12345u + static_cast<unsigned>(i));
  int hung = 0, done = 0, failed = 0;
  for (; done < forks && hung == 0; ++done) {
    usleep(2000);
    ChildOutcome r = ForkAndWait(ChildWork);
    if (r == kChildHung) ++hung;
    if (r == kChildFailed) {
      failed = 1;
      break;
    }
  }
  g_stop.store(true);
  for (std::thread& t : workers) t.join();
  printf("forks=%d hung=%d failed=%d\n", done, hung, failed);
  return hung == 0 && failed == 0 ? 0 : 1;
}
