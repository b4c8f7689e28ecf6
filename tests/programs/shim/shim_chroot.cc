// Changes its root to DIR (chroot, then chdir("/")) before it allocates much,
// then allocates and frees COUNT blocks of 4 MiB and keeps 10 of 1 MiB. The
// shim loads libunwind at a process's first sample, from its directory; at a
// rate where the program's start samples nothing, every sample comes after
// the chroot, where that directory is out of reach, and the shim has loaded
// libunwind before the chroot (namespace_interposer.cc).
//   shim_chroot DIR [COUNT=100] [syscall]
// With "syscall", chroots through syscall(SYS_chroot). Prints "chroot=RC"
// (0, or the errno's name).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const int count = argc > 2 ? atoi(argv[2]) : 100;
  const bool raw = argc > 3 && strcmp(argv[3], "syscall") == 0;
  const int rooted = raw ? static_cast<int>(syscall(SYS_chroot, argv[1])) : chroot(argv[1]);
  const int rc = rooted == 0 && chdir("/") == 0 ? 0 : errno;
  Churn(count);
  Keep(g_kept, 10, 1 << 20);
  printf("chroot=%s\n", rc == 0 ? "0" : rc == EPERM ? "EPERM" : strerror(rc));
  return 0;
}
