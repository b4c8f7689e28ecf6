// The allocator underneath the shim (glibc, jemalloc, tcmalloc...), resolved
// with dlsym(RTLD_NEXT) on first use, plus the bootstrap arena that serves
// allocations made while resolving (dlsym itself may call malloc/calloc).
#ifndef HEAPWATCH_PRELOAD_REAL_ALLOCATOR_H_
#define HEAPWATCH_PRELOAD_REAL_ALLOCATOR_H_

#include <stddef.h>
#include <stdint.h>

namespace heapwatch::preload {

struct RealAllocator {
  void* (*malloc)(size_t);
  void (*free)(void*);
  void* (*calloc)(size_t, size_t);
  void* (*realloc)(void*, size_t);
  int (*posix_memalign)(void**, size_t, size_t);
  void* (*aligned_alloc)(size_t, size_t);
  void* (*memalign)(size_t, size_t);
  void* (*valloc)(size_t);
  void* (*pvalloc)(size_t);
  size_t (*malloc_usable_size)(void*);
};

// Starts as bootstrap functions that resolve everything and then forward.
// Hidden: the interposed functions jump through it directly (default
// visibility cost a GOT load, relaxed to an extra lea, on every call).
extern RealAllocator g_real __attribute__((visibility("hidden")));

// True once the real functions are resolved. Until then (and re-entrantly
// while resolving) allocations come from the arena.
bool ResolveRealAllocator();
// Resolves, or waits (up to ~1 s) for the thread that is resolving to finish.
// False if resolution never finished.
bool WaitForRealAllocator();

// True if an object that comes before the shim in symbol lookup (the
// executable, or an earlier LD_PRELOAD entry) defines malloc: then the
// program's calls go there, not to the shim's. Known once resolved; the real
// functions are then that allocator's (real_allocator.cc, Lookup).
bool AllocatorPrecedes();
// The file name of the object whose malloc the program calls instead (""
// for the executable), or nullptr if none precedes the shim's.
const char* PrecedingAllocatorObject();

// True if the allocator's malloc and C++ operator new live in the same object
// (tcmalloc, jemalloc): its operator new does not call malloc, so the shim's
// operator new must record. False with libstdc++'s operator new, which calls
// malloc (recorded there).
extern bool g_allocator_owns_new __attribute__((visibility("hidden")));
inline bool AllocatorOwnsOperatorNew() { return g_allocator_owns_new; }

// True if the next operator new and delete are libstdc++'s (glibc malloc
// underneath): its new is malloc(n ? n : 1) and, only if that fails, the
// new-handler loop and bad_alloc; its delete is free(). The shim's plain
// new and delete then call its own malloc and free directly instead of
// passing through libstdc++'s, which would call them back (new 24 -> 17,
// delete 18 -> 12 instructions; the entries in cxx_interposer.cc).
extern bool g_libstdcxx_new_delete __attribute__((visibility("hidden")));

// Bootstrap arena: a static bump allocator; its blocks are never reused.
// It serves at most kMaxArenaBlocks blocks (then ENOMEM): those allocated
// while the real functions are being resolved, which ArenaBlocks lists once
// ResolveRealAllocator has returned true (the live table pins them at its
// Init, so free() recognises them by its filter alone), and later the
// libunwind loader thread's (recorder.h, SenderHeapAlloc), each pinned as
// it is made.
inline constexpr size_t kArenaBytes = 256 << 10;
inline constexpr size_t kMaxArenaBlocks = 48;
extern char g_arena[kArenaBytes] __attribute__((visibility("hidden")));
inline bool InArena(const void* p) {
  return reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(g_arena) < kArenaBytes;
}
void* ArenaAlloc(size_t size, size_t alignment);
size_t ArenaBlockSize(const void* p);
// Writes the addresses of the arena's blocks (at most kMaxArenaBlocks) and
// returns their number. Complete only once the allocator is resolved; at
// the shim's start, before any thread of the shim's exists.
size_t ArenaBlocks(uint64_t* out);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_REAL_ALLOCATOR_H_
