// Takes as much as its RLIMIT_AS allows, 1 MiB at a time through malloc
// (each block mapped by glibc on its own), frees it all and prints how many
// MiB it got: what a program near its limit has left under the shim
// (test_shim_api.py, AddressSpaceLimitTest).
//   shim_address_space [LIMIT_MIB [FILE]]
// With LIMIT_MIB it sets its own RLIMIT_AS first, after the shim started and
// before its first allocation. With FILE it first does what some daemons
// do: closes its standard error and opens FILE, which gets descriptor 2,
// and writes "data\n" there; the shim's line about the limit must not land
// in it.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

enum { kMaxBlocks = 1 << 16 };
static void* g_blocks[kMaxBlocks];

int main(int argc, char** argv) {
  if (argc > 2) {
    close(STDERR_FILENO);
    if (open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600) != STDERR_FILENO) return 3;
    if (write(STDERR_FILENO, "data\n", 5) != 5) return 3;
  }
  if (argc > 1) {
    rlim_t bytes = (rlim_t)strtoull(argv[1], NULL, 10) << 20;
    struct rlimit limit = {bytes, bytes};
    if (setrlimit(RLIMIT_AS, &limit) != 0) return 2;
  }
  size_t n = 0;
  while (n < kMaxBlocks && (g_blocks[n] = malloc(1 << 20)) != NULL) ++n;
  for (size_t i = 0; i < n; ++i) free(g_blocks[i]);
  printf("%zu\n", n);
  return 0;
}
