// For the shim's test programs that keep marker blocks live across a call
// under test (a seccomp filter, setuid, unshare): the receiver then finds
// them among the live samples, by their size.
#ifndef HEAPWATCH_TESTS_PROGRAMS_SHIM_KEPT_BLOCKS_H_
#define HEAPWATCH_TESTS_PROGRAMS_SHIM_KEPT_BLOCKS_H_

#include <stdlib.h>
#include <string.h>

// `count` blocks of `bytes` into blocks[0 .. count), each touched (GCC
// drops an allocation nothing reads or writes).
inline void Keep(void** blocks, int count, size_t bytes) {
  for (int i = 0; i < count; ++i) {
    blocks[i] = malloc(bytes);
    if (blocks[i] != nullptr) memset(blocks[i], 7, 16);
  }
}

#endif  // HEAPWATCH_TESTS_PROGRAMS_SHIM_KEPT_BLOCKS_H_
