// A child made without fork()'s handlers: glibc's _Fork(), or clone()
// without CLONE_VM (as sandboxes and container runtimes make theirs), from a
// process that itself starts no thread. The parent keeps 20 blocks of
// 555,555 bytes; the child allocates and frees 4,000 blocks, keeps 30 of
// 666,666 bytes, tells the parent through a pipe that it is about to exit,
// and leaves with exit() (so atexit handlers and library destructors run).
// With THREADS=1 the child first starts a thread that stays until the exit,
// and once it runs allocates and frees one block of 1 GiB (untouched): its
// first sample at HEAPWATCH_SAMPLE_BYTES=16 MiB, the test's rate then (the
// parent allocates one too before the copy, to sample);
// with FORK_FIRST=1 it first forks a grandchild (before any allocation of
// its own) that allocates and exits.
//   shim_copy HOW(fork|_Fork|clone) [THREADS=0] [FORK_FIRST=0]
// Prints "parent=PID child=PID exit_ms=MS", the last the time from the child's message to the
// parent reaping it. Exits 1 if the child failed, 2 on bad arguments.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "fork_child.h"

namespace {

int g_pipe[2];
bool g_thread_first = false;
bool g_fork_first = false;
std::atomic<bool> g_idle_running{false};
constexpr size_t kBigBlock = size_t{1} << 30;
void* g_parent_blocks[20];
void* g_child_blocks[30];

uint64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

// Allocates and frees one big block, untouched (and not optimised away).
void BigBlock() {
  void* p = malloc(kBigBlock);
  asm volatile("" : : "r"(p) : "memory");
  free(p);
}

void* Idle(void*) {
  g_idle_running.store(true);
  pause();
  return nullptr;
}

int Child(void*) {
  if (g_thread_first) {
    pthread_t thread;
    if (pthread_create(&thread, nullptr, Idle, nullptr) != 0) _exit(3);
    while (!g_idle_running.load()) sched_yield();
    BigBlock();
  }
  if (g_fork_first && ForkAndWait([] { return AllocateAndFree(4000, 4096); }) != kChildDone) {
    _exit(6);
  }
  AllocateAndFree(4000, 4096);
  for (void*& p : g_child_blocks) {
    p = malloc(666666);
    if (p == nullptr) _exit(4);
    memset(p, 6, 64);
  }
  char done = 'x';
  if (write(g_pipe[1], &done, 1) != 1) _exit(5);
  exit(0);
}

alignas(16) char g_clone_stack[1 << 20];

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* how = argv[1];
  g_thread_first = argc > 2 && atoi(argv[2]) != 0;
  g_fork_first = argc > 3 && atoi(argv[3]) != 0;
  if (g_thread_first) BigBlock();
  for (void*& p : g_parent_blocks) {
    p = malloc(555555);
    if (p == nullptr) return 1;
    memset(p, 5, 64);
  }
  if (pipe(g_pipe) != 0) return 1;
  pid_t pid;
  if (strcmp(how, "fork") == 0) {
    pid = fork();
  } else if (strcmp(how, "_Fork") == 0) {
    pid = _Fork();
  } else if (strcmp(how, "clone") == 0) {
    pid = clone(Child, g_clone_stack + sizeof(g_clone_stack), SIGCHLD, nullptr);
  } else {
    return 2;
  }
  if (pid < 0) return 1;
  if (pid == 0) Child(nullptr);  // fork and _Fork
  char done;
  if (read(g_pipe[0], &done, 1) != 1) return 1;
  uint64_t told = NowMs();
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 1;
  printf("parent=%d child=%d exit_ms=%llu\n", static_cast<int>(getpid()), static_cast<int>(pid),
         static_cast<unsigned long long>(NowMs() - told));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
