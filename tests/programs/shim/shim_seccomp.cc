// A program that sandboxes itself with a seccomp filter, as sshd's privsep
// child, minijail and browsers' renderers do: past the filter, socket() and
// connect() end the process (SECCOMP_RET_KILL_PROCESS, SIGSYS). Under the
// shim the sender made those calls at the first sample after the filter
// (or on a reconnect), and the kernel killed the program.
//   shim_seccomp prctl|syscall
// installs the filter with prctl(PR_SET_SECCOMP) or, as libseccomp does,
// with syscall(SYS_seccomp).
//   shim_seccomp calls
// makes calls through syscall() and prctl(), which the shim interposes, and
// prints what they returned: the same with and without the shim. Keeps 10 blocks of 55,555 bytes before the
// filter and 10 of 44,444 after, churns 64 MiB after it, forks a child that
// allocates, waits 0.3 s and exits, and prints "sandboxed, child 0" (the
// child's exit status, or 128 + its signal).
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kept_blocks.h"

namespace {

void* g_before[10];
void* g_after[10];

// Blocks come and go, each seen by the compiler to escape (GCC removes a
// malloc and free it can see through).
void Churn(size_t total) {
  for (size_t done = 0; done < total; done += 65536) {
    void* volatile block = malloc(65536);
    if (block != nullptr) memset(block, 1, 64);
    free(block);
  }
}

bool Sandbox(bool through_syscall) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
  };
  struct sock_fprog program = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  if (through_syscall) return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) == 0;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// Through syscall(): an error (errno), a result, six arguments, a process
// made with clone() (the child returns through syscall() too), errno left
// alone by a success; through prctl(): a name set and read back, an error.
int Calls() {
  errno = 0;
  long rc = syscall(SYS_close, -1);
  printf("close(-1): %ld %s\n", rc, strerror(errno));
  printf("getpid: %s\n", syscall(SYS_getpid) == getpid() ? "same" : "different");
  void* page = reinterpret_cast<void*>(
      syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  printf("mmap: %s\n", page == MAP_FAILED ? strerror(errno) : "mapped");
  errno = EDOM;
  long child = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (child == 0) _exit(7);
  int status = -1;
  printf("clone: %s, errno %s, child status %d\n", child > 0 ? "ok" : "failed", strerror(errno),
         child > 0 && waitpid(static_cast<pid_t>(child), &status, 0) == child ? WEXITSTATUS(status) : -1);
  char name[16] = {};
  int set = prctl(PR_SET_NAME, "renamed", 0, 0, 0);
  int get = prctl(PR_GET_NAME, name, 0, 0, 0);
  printf("prctl name: %d %d %s\n", set, get, name);
  errno = 0;
  rc = prctl(-1, 0, 0, 0, 0);
  printf("prctl(-1): %ld %s\n", rc, strerror(errno));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "calls") == 0) return Calls();
  if (argc != 2 || (strcmp(argv[1], "prctl") != 0 && strcmp(argv[1], "syscall") != 0)) {
    fprintf(stderr, "usage: shim_seccomp prctl|syscall|calls\n");
    return 2;
  }
  Keep(g_before, 10, 55555);
  Churn(8u << 20);
  if (!Sandbox(strcmp(argv[1], "syscall") == 0)) {
    perror("seccomp");
    return 1;
  }
  Keep(g_after, 10, 44444);
  Churn(64u << 20);
  pid_t child = fork();
  if (child == 0) {
    Churn(16u << 20);
    usleep(300000);  // time for a sender the child started to connect
    _exit(0);
  }
  int status = -1;
  if (child < 0 || waitpid(child, &status, 0) != child) return 1;
  printf("sandboxed, child %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return 0;
}
