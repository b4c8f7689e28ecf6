// The slow paths that the interposed calls share (interposer.cc for the C
// API, jemalloc_interposer.cc for jemalloc's): each takes the real call to
// make as a callable, so one body serves malloc and mallocx, free and
// sdallocx, realloc and rallocx. Only for the shim's entry points; included
// nowhere else.
#ifndef HEAPWATCH_PRELOAD_ALLOC_PATHS_H_
#define HEAPWATCH_PRELOAD_ALLOC_PATHS_H_

#include <stddef.h>
#include <string.h>

#include "real_allocator.h"
#include "recorder.h"

namespace heapwatch::preload {

// The allocating calls share one shape: the common case (not sampled) is a
// leaf that jumps to the real allocator, with no frame to set up; a sample
// goes to a function of its own, which keeps a frame pointer for
// HEAPWATCH_UNWIND=fp's walk. `alloc` is the real allocator's call (first:
// its captures then sit in the registers the call's own arguments came in,
// and the fast paths move nothing). `sender_heap`: malloc and calloc, which
// serve the sender thread from the shim's arena (SenderHeapAlloc; the
// sender's sampler sends all its allocations here).
template <typename Alloc>
__attribute__((noinline)) void* AllocSlow(Alloc alloc, size_t size, bool sender_heap = false) {
  if (!SampleSlowPath(size)) {
    if (sender_heap) {
      if (void* p = SenderHeapAlloc(size)) return p;
    }
    return alloc();
  }
  void* p = alloc();
  RecordAlloc(p, size);
  return p;
}

// A free whose pointer the filter did not rule out. `real_free(p)` is the
// real call.
template <typename Free>
__attribute__((noinline)) void FreeSlow(void* p, Free real_free) {
  // Most pointers here only share a filter cell with a sample (a third of
  // all frees at a 4 GiB heap); the cell's fingerprint settles them.
  if (!g_shim.table.MaybeHolds(reinterpret_cast<uintptr_t>(p))) return real_free(p);
  if (InArena(p)) return;  // bootstrap blocks are never reused
  RecordFree(p);
  real_free(p);
}

// A bootstrap block moved to the real allocator: `alloc()` allocates (through
// the shim, so it is sampled like any allocation), the arena keeps its block.
template <typename Alloc>
void* MoveFromArena(void* p, size_t size, Alloc alloc) {
  void* q = alloc();
  if (q) {
    size_t old = ArenaBlockSize(p);
    memcpy(q, p, old < size ? old : size);
  }
  return q;
}

// A resize that may move the block (realloc, rallocx): a free of p and an
// allocation of `size` bytes. `move()` is the real call; a NULL from it
// leaves p live unless `null_freed` (realloc(p, 0)).
template <typename Move>
__attribute__((noinline)) void* ResizeSlow(void* p, size_t size, bool null_freed, Move move) {
  LiveTable::Entry old;
  bool was_sampled = RecordFree(p, &old);
  bool sample = ShouldRecord(size);
  void* q = move();
  if (!q) {
    if (was_sampled && !null_freed) RestoreLive(old);
    return nullptr;
  }
  if (sample) RecordAlloc(q, size);
  return q;
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_ALLOC_PATHS_H_
