// Allocates COUNT blocks of BYTES with new[] and deletes each at once: a
// known number of bytes for the collector's estimate to match.
//   shim_new_bytes [COUNT=200000] [BYTES=1000]
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  long count = argc > 1 ? atol(argv[1]) : 200000;
  long bytes = argc > 2 ? atol(argv[2]) : 1000;
  if (count < 0 || bytes < 1) return 2;
  for (long i = 0; i < count; ++i) {
    char* block = new char[static_cast<size_t>(bytes)];
    memset(block, 1, 16);
    asm volatile("" ::"r"(block) : "memory");
    delete[] block;
  }
  return 0;
}
