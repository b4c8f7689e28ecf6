#include "raw_memory.h"

#include <sys/mman.h>

namespace heapwatch::preload {

void* MapZeroed(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void Unmap(void* p, size_t bytes) {
  if (p) munmap(p, bytes);
}

bool DiscardPages(void* p, size_t bytes) {
  return p && madvise(p, bytes, MADV_DONTNEED) == 0;
}

}  // namespace heapwatch::preload
