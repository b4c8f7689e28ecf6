// A service that drops its privileges after start while its threads
// allocate: glibc's setuid() in a process with threads signals every thread
// (SIGSETXID) and waits until each has changed its credentials, the shim's
// sender too, which runs with every signal it can block blocked. Keeps 10
// blocks of 444,444 bytes before and 10 of 333,333 after. And whether every
// task of the process (/proc/self/task) has the new credentials: the shim's
// sender is no thread of glibc's, which glibc's setuid() leaves as it was.
//   shim_setuid UID [THREADS]   (2 threads by default; 0: none)
// First toggles its effective ids to UID and back, then drops to UID.
// Prints "uid=UID allocations=some|none toggled=T tasks=T", each T "all" or
// N-of-M tasks with the ids expected after the toggle and the drop;
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

// "all", or how many of the process's tasks have these ids: their Uid and
// Gid lines in /proc (real, effective, saved, filesystem).
void TasksWith(const char* uids, const char* gids, char* out, size_t size) {
  DIR* dir = opendir("/proc/self/task");
  int tasks = 0, with = 0;
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
      matched += strncmp(line, "Uid:\t", 5) == 0 && strcmp(line + 5, uids) == 0;
      matched += strncmp(line, "Gid:\t", 5) == 0 && strcmp(line + 5, gids) == 0;
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
  // A daemon's toggle of its effective ids (per request, say), then its drop.
  char want_uids[64], want_gids[64], toggled[32], tasks[32];
  snprintf(want_uids, sizeof want_uids, "0\t%u\t0\t%u\n", uid, uid);
  snprintf(want_gids, sizeof want_gids, "0\t%u\t0\t%u\n", uid, uid);
  int rc = setegid(uid) == 0 && seteuid(uid) == 0 ? 0 : 1;
  TasksWith(want_uids, want_gids, toggled, sizeof toggled);
  rc |= seteuid(0) == 0 && setegid(0) == 0 ? 0 : 1;
  rc |= setgroups(0, nullptr) == 0 && setgid(uid) == 0 && setuid(uid) == 0 ? 0 : 1;
  snprintf(want_uids, sizeof want_uids, "%u\t%u\t%u\t%u\n", uid, uid, uid, uid);
  TasksWith(want_uids, want_uids, tasks, sizeof tasks);
  usleep(20000);
  g_stop.store(true);
  unsigned long allocations = count > 0 ? 0 : 1;
  for (int i = 0; i < count && i < 2; ++i) {
    void* n = nullptr;
    pthread_join(threads[i], &n);
    allocations += reinterpret_cast<unsigned long>(n);
  }
  Keep(g_after, 10, 333333);
  printf("uid=%d allocations=%s toggled=%s tasks=%s\n", static_cast<int>(getuid()),
         allocations > 0 ? "some" : "none", toggled, tasks);
  return rc;
}
