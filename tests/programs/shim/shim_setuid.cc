// A service that drops its privileges after start while its threads
// allocate: glibc's setuid() in a process with threads signals every thread
// (SIGSETXID) and waits until each has changed its credentials, the shim's
// sender too, which runs with every signal it can block blocked. Keeps 10
// blocks of 444,444 bytes before and 10 of 333,333 after. And whether every
// task of the process (/proc/self/task) has the new credentials: the shim's
// sender is no thread of glibc's, which glibc's setuid() leaves as it was.
//   shim_setuid UID [THREADS]   (2 threads by default; 0: none)
// Prints "uid=UID allocations=some|none tasks=all|N-of-M";
// exits 1 if a call failed.
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
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

// "all", or how many of the process's tasks have every uid and gid `id`.
void TasksWithIds(unsigned id, char* out, size_t size) {
  DIR* dir = opendir("/proc/self/task");
  int tasks = 0, with = 0;
  char want[64];
  snprintf(want, sizeof want, "%u\t%u\t%u\t%u\n", id, id, id, id);
  while (dir) {
    dirent* e = readdir(dir);
    if (!e) break;
    if (e->d_name[0] == '.') continue;
    char path[300], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    FILE* f = fopen(path, "r");
    if (!f) continue;
    ++tasks;
    int matched = 0;
    while (fgets(line, sizeof line, f)) {
      if ((strncmp(line, "Uid:\t", 5) == 0 || strncmp(line, "Gid:\t", 5) == 0) && strcmp(line + 5, want) == 0) {
        ++matched;
      }
    }
    fclose(f);
    with += matched == 2;
  }
  if (dir) closedir(dir);
  if (tasks > 0 && with == tasks) {
    snprintf(out, size, "all");
  } else {
    snprintf(out, size, "%d-of-%d", with, tasks);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  uid_t uid = static_cast<uid_t>(atoi(argv[1]));
  const int count = argc > 2 ? atoi(argv[2]) : 2;
  Keep(g_before, 10, 444444);
  pthread_t threads[2];
  for (int i = 0; i < count && i < 2; ++i) {
    if (pthread_create(&threads[i], nullptr, Churn, nullptr) != 0) return 1;
  }
  usleep(20000);
  int rc = setgroups(0, nullptr) == 0 && setgid(uid) == 0 && setuid(uid) == 0 ? 0 : 1;
  char tasks[32];
  TasksWithIds(uid, tasks, sizeof tasks);
  usleep(20000);
  g_stop.store(true);
  unsigned long allocations = count > 0 ? 0 : 1;
  for (int i = 0; i < count && i < 2; ++i) {
    void* n = nullptr;
    pthread_join(threads[i], &n);
    allocations += reinterpret_cast<unsigned long>(n);
  }
  Keep(g_after, 10, 333333);
  printf("uid=%d allocations=%s tasks=%s\n", static_cast<int>(getuid()), allocations > 0 ? "some" : "none",
         tasks);
  return rc;
}
