#include "raw_memory.h"

#include <stdint.h>
#include <sys/mman.h>

namespace heapwatch::preload {

void* MapZeroed(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void* MapReserved(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

bool CommitPages(void* p, size_t bytes) {
  return p && mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0;
}

void* MapZeroedHuge(size_t bytes) {
  constexpr size_t kHuge = kHugePageBytes;
  if (bytes == 0 || bytes % kHuge != 0) return nullptr;
  auto* raw = static_cast<char*>(MapZeroed(bytes + kHuge));
  if (!raw) return nullptr;
  auto* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) & ~(kHuge - 1));
  // Trim the unaligned head and the tail, so that Unmap(p, bytes) frees it all.
  if (aligned > raw) munmap(raw, static_cast<size_t>(aligned - raw));
  size_t tail = kHuge - static_cast<size_t>(aligned - raw);
  if (tail > 0) munmap(aligned + bytes, tail);
  madvise(aligned, bytes, MADV_HUGEPAGE);
  return aligned;
}

void Unmap(void* p, size_t bytes) {
  if (p) munmap(p, bytes);
}

bool DiscardPages(void* p, size_t bytes) {
  return p && madvise(p, bytes, MADV_DONTNEED) == 0;
}

bool WipeOnFork(void* p, size_t bytes) {
  return p && madvise(p, bytes, MADV_WIPEONFORK) == 0;
}

void* MapZeroedWipedOnFork(size_t bytes) {
  void* p = MapZeroed(bytes);
  WipeOnFork(p, bytes);
  return p;
}

bool PrefaultPages(void* p, size_t bytes) {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  return p && madvise(p, bytes, MADV_POPULATE_WRITE) == 0;
}

}  // namespace heapwatch::preload
