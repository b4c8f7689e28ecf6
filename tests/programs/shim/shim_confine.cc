// Confines itself before it allocates much, in one of three ways, then
// allocates and frees COUNT blocks of 4 MiB and keeps 10 of 1 MiB:
//   chroot DIR          chroot(DIR), then chdir("/")
//   chroot-syscall DIR  the same through syscall(SYS_chroot)
//   landlock            a Landlock ruleset that refuses every file read,
//                       through syscall() (glibc has no wrappers)
// The shim loads libunwind at a process's first sample, from its directory;
// at a rate where the program's start samples nothing, every sample comes
// after the confinement, which puts that directory out of reach, and the
// shim has loaded libunwind before it (namespace_interposer.cc,
// syscall_interposer.cc).
//   shim_confine HOW [DIR] [COUNT=100]
// Prints "confined=RC" (0, or the errno's name).
#include <errno.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kept_blocks.h"

namespace {

void* g_kept[10];

__attribute__((noinline)) void Churn(int count) {
  for (int i = 0; i < count; ++i) {
    void* p = malloc(4 << 20);
    if (p != nullptr) memset(p, 1, 16);
    asm volatile("" : : "r"(p) : "memory");
    free(p);
  }
}

// 0 or an errno.
int Landlock() {
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE;
  long fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (fd < 0) return errno;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  int rc = syscall(SYS_landlock_restrict_self, fd, 0) == 0 ? 0 : errno;
  close(static_cast<int>(fd));
  return rc;
}

int Chroot(const char* dir, bool raw) {
  int rooted = raw ? static_cast<int>(syscall(SYS_chroot, dir)) : chroot(dir);
  return rooted == 0 && chdir("/") == 0 ? 0 : errno;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const bool landlock = strcmp(argv[1], "landlock") == 0;
  const int count_arg = landlock ? 2 : 3;
  if (!landlock && argc < 3) return 2;
  const int count = argc > count_arg ? atoi(argv[count_arg]) : 100;
  const int rc = landlock ? Landlock() : Chroot(argv[2], strcmp(argv[1], "chroot-syscall") == 0);
  Churn(count);
  Keep(g_kept, 10, 1 << 20);
  printf("confined=%s\n", rc == 0 ? "0" : rc == EPERM ? "EPERM" : strerror(rc));
  return 0;
}
