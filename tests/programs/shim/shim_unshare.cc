// Calls the kernel allows only to a process with one thread, from a program
// that starts none: setns into its own mount namespace, then unshare into a
// new user namespace. Under the shim, whose sender is a thread, both failed
// with EINVAL. Keeps 10 blocks of 22,222 bytes before and 10 of 11,111
// after.
//   shim_unshare [syscall]
// With "syscall", makes both through syscall() (as a program that does not
// trust its libc's wrappers, or predates them, does). Prints "setns=RC
// unshare=RC" (0, or the errno's name).
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kept_blocks.h"

namespace {

void* g_before[10];
void* g_after[10];

const char* Result(int rc) {
  if (rc == 0) return "0";
  return errno == EINVAL ? "EINVAL" : errno == EPERM ? "EPERM" : strerror(errno);
}

}  // namespace

int main(int argc, char** argv) {
  const bool raw = argc > 1 && strcmp(argv[1], "syscall") == 0;
  Keep(g_before, 10, 22222);
  int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  const char* setns_rc =
      fd < 0 ? "open failed"
             : Result(raw ? static_cast<int>(syscall(SYS_setns, fd, CLONE_NEWNS)) : setns(fd, CLONE_NEWNS));
  const char* unshare_rc =
      Result(raw ? static_cast<int>(syscall(SYS_unshare, CLONE_NEWUSER)) : unshare(CLONE_NEWUSER));
  Keep(g_after, 10, 11111);
  printf("setns=%s unshare=%s\n", setns_rc, unshare_rc);
  return 0;
}
