// jemalloc's own allocation API: mallocx, rallocx, xallocx, dallocx and
// sdallocx, which services linked against jemalloc call on the same blocks as
// malloc and free (folly's sized frees and in-place growth, for one). Without
// these, a sampled block freed by sdallocx stayed in the live table for good:
// a leak that was not there.
//
// They forward to the allocator's own where it has them (jemalloc). Over any
// other allocator the shim still defines the names (an interposer cannot
// define a symbol only sometimes), so a program that looks them up finds
// them: they are then stand-ins built on that allocator's standard calls,
// with jemalloc's meaning (flags: alignment and MALLOCX_ZERO; the tcache and
// arena bits have no meaning there). sallocx, nallocx and mallctl are not
// interposed: they neither allocate nor free.
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#include <atomic>

#include "alloc_paths.h"
#include "dl_functions.h"
#include "real_allocator.h"
#include "recorder.h"

#define HW_EXPORT extern "C" __attribute__((visibility("default")))

using heapwatch::preload::DlSym;
using heapwatch::preload::g_real;
using heapwatch::preload::InArena;
using heapwatch::preload::MaybeSampled;
using heapwatch::preload::Unsampled;

namespace {

constexpr int kLgAlignMask = 0x3f;  // MALLOCX_LG_ALIGN(la) is la
constexpr int kZero = 0x40;         // MALLOCX_ZERO

// The alignment a jemalloc flags word asks for, 0 for the default.
size_t AlignmentOf(int flags) {
  int lg = flags & kLgAlignMask;
  return lg ? size_t{1} << lg : 0;
}

// The stand-ins, on the real allocator underneath (the entry points below
// have already sampled and recorded).
void* StandInMallocx(size_t size, int flags) {
  size_t align = AlignmentOf(flags);
  if (align <= alignof(max_align_t)) {
    return (flags & kZero) ? g_real.calloc(1, size) : g_real.malloc(size);
  }
  void* p = g_real.memalign(align, size);  // the allocator's, or built on its posix_memalign
  if (p && (flags & kZero)) memset(p, 0, size);
  return p;
}

void* StandInRallocx(void* p, size_t size, int flags) {
  if (size == 0) size = 1;  // realloc(p, 0) would free p; rallocx never does
  if (AlignmentOf(flags) <= alignof(max_align_t) && !(flags & kZero)) return g_real.realloc(p, size);
  // Aligned or zeroed: a new block, so that its alignment and zeroes hold.
  void* q = StandInMallocx(size, flags);
  if (q) {
    size_t old = g_real.malloc_usable_size(p);
    memcpy(q, p, old < size ? old : size);
    g_real.free(p);
  }
  return q;
}

// Nothing grows in place here: the block is as big as it already is (no
// new bytes, so nothing for MALLOCX_ZERO to clear).
size_t StandInXallocx(void* p, size_t, size_t, int) { return g_real.malloc_usable_size(p); }

void StandInDallocx(void* p, int) { g_real.free(p); }
void StandInSdallocx(void* p, size_t, int) { g_real.free(p); }

enum Fn : int { kMallocx, kRallocx, kXallocx, kDallocx, kSdallocx, kFnCount };
constexpr const char* kNames[kFnCount] = {"mallocx", "rallocx", "xallocx", "dallocx", "sdallocx"};
void* const kStandIns[kFnCount] = {
    reinterpret_cast<void*>(StandInMallocx), reinterpret_cast<void*>(StandInRallocx),
    reinterpret_cast<void*>(StandInXallocx), reinterpret_cast<void*>(StandInDallocx),
    reinterpret_cast<void*>(StandInSdallocx)};

// The allocator's own function, or the stand-in. Nothing calls these while
// the allocator is being resolved (dlsym allocates with malloc and calloc).
void* ResolveNext(Fn f) {
  heapwatch::preload::WaitForRealAllocator();
  void* p = DlSym(RTLD_NEXT, kNames[f]);
  return p ? p : kStandIns[f];
}

// Where call f goes: a resolver on the first call, the function it found on
// every later one (so an entry point is its check and one indirect jump).
template <Fn f, typename R, typename... A>
struct Next {
  using F = R (*)(A...);
  static R First(A... a) {
    F target = reinterpret_cast<F>(ResolveNext(f));
    fn.store(target, std::memory_order_relaxed);
    return target(a...);
  }
  static constinit inline std::atomic<F> fn{First};
  static F Get() { return fn.load(std::memory_order_relaxed); }
};
using NextMallocx = Next<kMallocx, void*, size_t, int>;
using NextRallocx = Next<kRallocx, void*, void*, size_t, int>;
using NextXallocx = Next<kXallocx, size_t, void*, size_t, size_t, int>;
using NextDallocx = Next<kDallocx, void, void*, int>;
using NextSdallocx = Next<kSdallocx, void, void*, size_t, int>;

__attribute__((noinline)) void* RallocxSlow(void* p, size_t size, int flags);

}  // namespace

HW_EXPORT void* mallocx(size_t size, int flags) {
  if (__builtin_expect(Unsampled(size), 1)) return NextMallocx::Get()(size, flags);
  return heapwatch::preload::AllocSlow([size, flags] { return NextMallocx::Get()(size, flags); },
                                       size);
}

HW_EXPORT void* rallocx(void* p, size_t size, int flags) {
  if (__builtin_expect(!MaybeSampled(p) && Unsampled(size), 1)) {
    return NextRallocx::Get()(p, size, flags);
  }
  return RallocxSlow(p, size, flags);
}

// In place or not at all: the address stays. A resize reads as a free of
// the block and an allocation of `size` bytes at the same address (as a
// realloc that did not move); one that could not grow changes nothing.
HW_EXPORT size_t xallocx(void* p, size_t size, size_t extra, int flags) {
  if (InArena(p)) return heapwatch::preload::ArenaBlockSize(p);  // bootstrap blocks never grow
  size_t usable = NextXallocx::Get()(p, size, extra, flags);
  if (usable < size) return usable;
  if (MaybeSampled(p)) heapwatch::preload::RecordFree(p);
  if (heapwatch::preload::ShouldRecord(size)) heapwatch::preload::RecordAlloc(p, size);
  return usable;
}

HW_EXPORT void dallocx(void* p, int flags) {
  if (__builtin_expect(!MaybeSampled(p), 1)) return NextDallocx::Get()(p, flags);
  heapwatch::preload::FreeSlow(p, [flags](void* q) { NextDallocx::Get()(q, flags); });
}

HW_EXPORT void sdallocx(void* p, size_t size, int flags) {
  if (__builtin_expect(!MaybeSampled(p), 1)) return NextSdallocx::Get()(p, size, flags);
  heapwatch::preload::FreeSlow(p,
                               [size, flags](void* q) { NextSdallocx::Get()(q, size, flags); });
}

namespace {

void* RallocxSlow(void* p, size_t size, int flags) {
  if (InArena(p)) {
    return heapwatch::preload::MoveFromArena(p, size, [size, flags] { return mallocx(size, flags); });
  }
  return heapwatch::preload::ResizeSlow(p, size, /*null_freed=*/false, [p, size, flags] {
    return NextRallocx::Get()(p, size, flags);
  });
}

}  // namespace
