// A short-lived program, like `true` or `cat` but with known allocations:
// COUNT blocks of BYTES from ShortLivedAlloc, PAUSE_US microseconds apart,
// the first KEEP of them left live, the rest freed; then it returns from
// main at once.
//   shim_short [COUNT=100] [BYTES=4096] [KEEP=10] [PAUSE_US=0]
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// External linkage, so the compiler cannot drop the allocations.
void* g_short_blocks[1024];

__attribute__((noinline)) void* ShortLivedAlloc(size_t bytes) {
  void* block = malloc(bytes);
  if (block != nullptr) memset(block, 1, 16);
  asm volatile("" ::: "memory");
  return block;
}

int main(int argc, char** argv) {
  int count = argc > 1 ? atoi(argv[1]) : 100;
  size_t bytes = argc > 2 ? strtoul(argv[2], nullptr, 10) : 4096;
  int keep = argc > 3 ? atoi(argv[3]) : 10;
  int pause_us = argc > 4 ? atoi(argv[4]) : 0;
  if (count < 0 || count > 1024 || keep < 0 || keep > count || bytes < 16 || pause_us < 0) return 2;
  for (int i = 0; i < count; ++i) {
    g_short_blocks[i] = ShortLivedAlloc(bytes);
    if (pause_us > 0) usleep(static_cast<useconds_t>(pause_us));
  }
  for (int i = keep; i < count; ++i) free(g_short_blocks[i]);
  return 0;
}
