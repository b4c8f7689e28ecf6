// A service that drops its privileges after start while its threads
// allocate: glibc's setuid() in a process with threads signals every thread
// (SIGSETXID) and waits until each has changed its credentials, the shim's
// sender too, which runs with every signal it can block blocked. Keeps 10
// blocks of 444,444 bytes before and 10 of 333,333 after.
//   shim_setuid UID
// Prints "uid=UID allocations=N"; exits 1 if a call failed.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "kept_blocks.h"

namespace {

std::atomic<bool> g_stop{false};

void* Churn(void*) {
  unsigned long n = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    void* p = malloc(64 + n % 8192);
    if (p != nullptr) memset(p, 3, 8);
    asm volatile("" : : "r"(p) : "memory");
    free(p);
    ++n;
  }
  return reinterpret_cast<void*>(n);
}

void* g_before[10];
void* g_after[10];

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  uid_t uid = static_cast<uid_t>(atoi(argv[1]));
  Keep(g_before, 10, 444444);
  pthread_t threads[2];
  for (pthread_t& t : threads) {
    if (pthread_create(&t, nullptr, Churn, nullptr) != 0) return 1;
  }
  usleep(20000);
  int rc = setgid(uid) == 0 && setuid(uid) == 0 ? 0 : 1;
  usleep(20000);
  g_stop.store(true);
  unsigned long allocations = 0;
  for (pthread_t& t : threads) {
    void* n = nullptr;
    pthread_join(t, &n);
    allocations += reinterpret_cast<unsigned long>(n);
  }
  Keep(g_after, 10, 333333);
  printf("uid=%d allocations=%s\n", static_cast<int>(getuid()), allocations > 0 ? "some" : "none");
  return rc;
}
