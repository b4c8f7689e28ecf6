// For the shim's fork test programs: forks a child that runs work() and
// exits with its result through exit() (so the shim's exit flush runs), and
// waits for it. A child not done within 5 s counts as hung and is killed
// with SIGKILL (a thread waiting for libunwind's lock has every signal
// blocked). Returns kChildDone, kChildHung or kChildFailed (no fork, or a
// child that did not exit with 0).
#ifndef HEAPWATCH_TESTS_PROGRAMS_SHIM_FORK_CHILD_H_
#define HEAPWATCH_TESTS_PROGRAMS_SHIM_FORK_CHILD_H_

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum ChildOutcome { kChildDone, kChildHung, kChildFailed };

// A child's work: `count` blocks of `bytes` allocated, touched and freed in
// turn (so that it samples); 0.
inline int AllocateAndFree(int count, size_t bytes) {
  for (int i = 0; i < count; ++i) {
    void* p = malloc(bytes);
    if (p != nullptr) memset(p, 2, 16);
    asm volatile("" : : "r"(p) : "memory");
    free(p);
  }
  return 0;
}

inline ChildOutcome ForkAndWait(int (*work)()) {
  pid_t pid = fork();
  if (pid < 0) return kChildFailed;
  if (pid == 0) exit(work());
  int status = 0;
  pid_t got = 0;
  for (int waited_ms = 0; got == 0 && waited_ms < 5000; waited_ms += 10) {
    got = waitpid(pid, &status, WNOHANG);
    if (got == 0) usleep(10000);
  }
  if (got == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return kChildHung;
  }
  return got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? kChildDone : kChildFailed;
}

#endif  // HEAPWATCH_TESTS_PROGRAMS_SHIM_FORK_CHILD_H_
