// Takes as much as its RLIMIT_AS allows, 1 MiB at a time through malloc
// (each block mapped by glibc on its own), frees it all and prints how many
// MiB it got: what a program near its limit has left under the shim
// (test_shim_api.py, AddressSpaceLimitTest).
//   shim_address_space [LIMIT_MIB]
// With LIMIT_MIB it sets its own RLIMIT_AS first, after the shim started and
// before its first allocation.
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

enum { kMaxBlocks = 1 << 16 };
static void* g_blocks[kMaxBlocks];

int main(int argc, char** argv) {
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
