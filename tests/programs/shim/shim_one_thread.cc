// A program with one thread of its own. Its samples start the shim's sender,
// which glibc must not count as a thread (preload/sender.cc): glibc keeps
// its single-thread shortcuts for such a program (stdio without locks,
// malloc without atomic operations, a fork that takes no locks), and
// __libc_single_threaded says so. Keeps 16 blocks of 1 MiB, waits 100 ms (the
// sender's first rounds), and prints glibc's flag and the number of tasks
// (the sender is one: /proc/self/task), then forks a child that does the
// same with 16 blocks of 512 KiB and waits for it.
//   prints "single_threaded=1 tasks=T" for the parent, then for the child
#include <dirent.h>
#include <stdio.h>
#include <sys/single_threaded.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kept_blocks.h"

namespace {

int Tasks() {
  DIR* dir = opendir("/proc/self/task");
  int tasks = 0;
  while (dir) {
    dirent* e = readdir(dir);
    if (!e) break;
    tasks += e->d_name[0] != '.';
  }
  if (dir) closedir(dir);
  return tasks;
}

void KeepAndSay(size_t bytes) {
  static void* kept[16];
  Keep(kept, 16, bytes);
  usleep(100000);
  printf("single_threaded=%d tasks=%d\n", __libc_single_threaded ? 1 : 0, Tasks());
  fflush(stdout);
}

}  // namespace

int main() {
  KeepAndSay(1 << 20);
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    KeepAndSay(512 << 10);
    return 0;
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return 1;
  return WEXITSTATUS(status);
}
