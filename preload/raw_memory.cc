#include "raw_memory.h"

#include <stdint.h>
#include <sys/mman.h>

#include "raw_syscall.h"

namespace heapwatch::preload {

void* MapZeroed(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = sys::Mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void* MapReserved(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = sys::Mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

bool CommitPages(void* p, size_t bytes) {
  return p && sys::Mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0;
}

void* MapZeroedHuge(size_t bytes) {
  constexpr size_t kHuge = kHugePageBytes;
  if (bytes == 0 || bytes % kHuge != 0) return nullptr;
  auto* raw = static_cast<char*>(MapZeroed(bytes + kHuge));
  if (!raw) return nullptr;
  auto* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) & ~(kHuge - 1));
  // Trim the unaligned head and the tail, so that Unmap(p, bytes) frees it all.
  if (aligned > raw) sys::Munmap(raw, static_cast<size_t>(aligned - raw));
  size_t tail = kHuge - static_cast<size_t>(aligned - raw);
  if (tail > 0) sys::Munmap(aligned + bytes, tail);
  sys::Madvise(aligned, bytes, MADV_HUGEPAGE);
  return aligned;
}

void Unmap(void* p, size_t bytes) {
  if (p) sys::Munmap(p, bytes);
}

bool DiscardPages(void* p, size_t bytes) {
  return p && sys::Madvise(p, bytes, MADV_DONTNEED) == 0;
}

bool WipeOnFork(void* p, size_t bytes) {
  return p && sys::Madvise(p, bytes, MADV_WIPEONFORK) == 0;
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
  return p && sys::Madvise(p, bytes, MADV_POPULATE_WRITE) == 0;
}

}  // namespace heapwatch::preload
