// C++ operator new/delete. With libstdc++ underneath these are plain
// forwards (tail calls, no frame): libstdc++'s operator new calls malloc and
// its delete calls free, which the shim records. An allocator that brings its
// own operator new (tcmalloc, jemalloc) bypasses malloc, so in that case the
// shim records here, through the same sampler and recorder.
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

#include <atomic>
#include <new>

#include "dl_functions.h"
#include "real_allocator.h"
#include "recorder.h"

#define HW_CXX_EXPORT __attribute__((visibility("default")))

extern "C" void* heapwatch_own_malloc(size_t) __attribute__((visibility("hidden")));
extern "C" void heapwatch_own_free(void*) __attribute__((visibility("hidden")));

using heapwatch::preload::DlOpen;
using heapwatch::preload::DlSym;
using heapwatch::preload::g_libstdcxx_new_delete;
using heapwatch::preload::RecordAlloc;
using heapwatch::preload::RecordFree;
using heapwatch::preload::ShouldRecord;

namespace {

enum Fn : int {
  kNew, kNewNothrow, kNewAligned, kNewAlignedNothrow,
  kNewArr, kNewArrNothrow, kNewArrAligned, kNewArrAlignedNothrow,
  kDel, kDelSized, kDelNothrow, kDelAligned, kDelSizedAligned, kDelAlignedNothrow,
  kDelArr, kDelArrSized, kDelArrNothrow, kDelArrAligned, kDelArrSizedAligned,
  kDelArrAlignedNothrow, kFnCount
};

constexpr const char* kNames[kFnCount] = {
    "_Znwm", "_ZnwmRKSt9nothrow_t", "_ZnwmSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_Znam", "_ZnamRKSt9nothrow_t", "_ZnamSt11align_val_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv", "_ZdlPvm", "_ZdlPvRKSt9nothrow_t", "_ZdlPvSt11align_val_t", "_ZdlPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPv", "_ZdaPvm", "_ZdaPvRKSt9nothrow_t", "_ZdaPvSt11align_val_t", "_ZdaPvmSt11align_val_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t"};

std::atomic<void*> g_next[kFnCount];

// The next definition: the allocator's or libstdc++'s. A libstdc++ loaded
// later with RTLD_LOCAL is not visible to RTLD_NEXT, hence the second try.
__attribute__((noinline)) void* ResolveNext(Fn f) {
  void* p = DlSym(RTLD_NEXT, kNames[f]);
  if (!p) {
    if (void* h = DlOpen("libstdc++.so.6", RTLD_NOLOAD | RTLD_LAZY)) {
      p = DlSym(h, kNames[f]);
      dlclose(h);
    }
  }
  if (p) g_next[f].store(p, std::memory_order_relaxed);
  return p;
}

template <typename T>
inline T Next(Fn f) {
  void* p = g_next[f].load(std::memory_order_relaxed);
  if (__builtin_expect(!p, 0)) p = ResolveNext(f);
  return reinterpret_cast<T>(p);
}

// The shim must not need libstdc++ (C programs do not load it), so no
// std::nothrow: a tag of our own.
const std::nothrow_t kNoThrow{};

inline bool Owns() { return heapwatch::preload::AllocatorOwnsOperatorNew(); }

using NewFn = void* (*)(size_t);
using NewNothrowFn = void* (*)(size_t, const std::nothrow_t&);
using NewAlignedFn = void* (*)(size_t, std::align_val_t);
using NewAlignedNothrowFn = void* (*)(size_t, std::align_val_t, const std::nothrow_t&);

// Last resort when no operator new can be found at all (cannot happen for a
// program that links one): malloc, which is recorded.
void* FallbackNew(size_t n) { return malloc(n ? n : 1); }
void* FallbackNewAligned(size_t n, std::align_val_t a) {
  return aligned_alloc(static_cast<size_t>(a), (n + static_cast<size_t>(a) - 1) &
                                                   ~(static_cast<size_t>(a) - 1));
}

// The recording variants run the allocator's nothrow form (no exception can
// cross the shim's frames while its guard is held) and fall back to the
// throwing form, which runs the new-handler and throws, if that fails.
__attribute__((noinline)) void* RecordedNew(Fn throwing, Fn nothrow, size_t n) {
  auto nt = Next<NewNothrowFn>(nothrow);
  void* p = nt ? nt(n, kNoThrow) : nullptr;
  if (!p) {
    auto t = Next<NewFn>(throwing);
    return t ? t(n) : FallbackNew(n);
  }
  RecordAlloc(p, n);
  return p;
}

// Aligned new on an allocator that owns operator new: jemalloc's aligned
// operator new calls aligned_alloc through the PLT, i.e. the shim's, which
// would record (and count bytes) twice. So the shim serves aligned new from
// the allocator's aligned_alloc itself (same heap, so the allocator's delete
// frees it) and uses the allocator's operator new only when that fails, for
// its new-handler and exception.
__attribute__((noinline)) void* OwnedAlignedNew(size_t n, std::align_val_t a) {
  size_t align = static_cast<size_t>(a);
  size_t rounded = (n + align - 1) & ~(align - 1);
  if (rounded < n) return nullptr;
  bool sample = ShouldRecord(n);
  void* p = heapwatch::preload::g_real.aligned_alloc(align, rounded ? rounded : align);
  if (p && sample) RecordAlloc(p, n);
  return p;
}

using heapwatch::preload::MaybeSampled;
inline bool MaybeSampledDelete(void* p) { return Owns() && MaybeSampled(p); }

// Everything but the common case of a delete, out of line, so that the
// common case (unsampled, next delete resolved) is a leaf that tail-calls
// the allocator's delete with nothing to save: inlined, this cost ~25
// instructions per delete under callgrind.
template <typename F, typename... Rest>
__attribute__((noinline)) void DeleteSlow(Fn index, void* p, Rest... rest) {
  if (MaybeSampledDelete(p)) RecordFree(p);
  if (auto f = Next<F>(index)) return f(p, rest...);
  free(p);
}

// Plain new: the common case (resolved, and unsampled or not ours to
// record) is a leaf that tail-calls the next operator new; the rest is
// NewSlow's.
__attribute__((noinline)) void* NewSlow(Fn throwing, Fn nothrow, size_t n) {
  if (Owns() && ShouldRecord(n)) return RecordedNew(throwing, nothrow, n);
  auto f = Next<NewFn>(throwing);
  return f ? f(n) : FallbackNew(n);
}

// libstdc++'s new is malloc(n ? n : 1), then the new-handler and bad_alloc if
// that fails (real_allocator.h): the first part here, without the round trip
// through libstdc++ back into the shim's malloc; a failure goes to libstdc++.
inline void* LibstdcxxMalloc(size_t n) { return heapwatch_own_malloc(n + (n == 0)); }

// A sample (through the shim's malloc), or a failed allocation.
template <Fn throwing, Fn nothrow>
__attribute__((noinline)) void* LibstdcxxNewSlow(size_t n) {
  if (void* p = LibstdcxxMalloc(n)) return p;
  return NewSlow(throwing, nothrow, n);
}

// The hot operators (plain new and new[], the unaligned deletes) make the
// shim's check themselves (new: the sampling countdown; delete: the live
// table's filter) and, when it passes, jump through a target chosen once the
// allocator is resolved: over jemalloc and tcmalloc, the allocator's own
// operator, so the common case is the check and one indirect jump (new 6
// instructions, delete 7); over libstdc++, the part of libstdc++'s operator
// that matters without its call back into the shim (LibstdcxxNewTarget,
// RealFreeTarget); for any other C++ runtime, its operator as it is. Which
// allocator is underneath never changes after resolution, so a target is
// written once. Until then the target is a chooser. (Before 2026-12-02 the
// operators jumped to an entry that made the check: a jump more a call.)
//
// Over libstdc++: its new is malloc(n ? n : 1), then the new-handler and
// bad_alloc only if that fails. The check has counted n; the real malloc
// follows, whose NULL needs a frame, and that frame keeps no frame pointer
// (CMakeLists.txt gives one to every other frame; GCC 12 honours
// "omit-frame-pointer" here only with an -O level beside it). Nothing samples
// inside it, so HEAPWATCH_UNWIND=fp never walks it. A failure goes to
// libstdc++'s operator for the new-handler and the exception.
template <Fn throwing, Fn nothrow>
__attribute__((noinline, optimize("omit-frame-pointer", "O2"))) void* LibstdcxxNewTarget(size_t n) {
  if (void* p = heapwatch::preload::g_real.malloc(n + (n == 0))) return p;
  return NewSlow(throwing, nothrow, n);
}

// Undoes the hot path's count of n bytes, for a path that counts them again
// (the shim's malloc or NewSlow): bytes count once.
inline void GiveBackCount(size_t n) { heapwatch::preload::t_thread.sampler.bytes_left += n; }

// Another runtime's operator new calls malloc, the shim's, which counts the
// bytes again.
template <Fn throwing>
void* ForwardNewTarget(size_t n) {
  GiveBackCount(n);
  return reinterpret_cast<NewFn>(g_next[throwing].load(std::memory_order_relaxed))(n);
}

template <Fn throwing, Fn nothrow>
void* ChooseNew(size_t n);

template <Fn throwing, Fn nothrow>
struct NewTarget {
  static constinit inline std::atomic<NewFn> fn{ChooseNew<throwing, nothrow>};
};

template <Fn throwing, Fn nothrow>
void* ChooseNew(size_t n) {
  if (heapwatch::preload::ResolveRealAllocator() && Next<NewFn>(throwing)) {
    NewFn target = Owns() ? reinterpret_cast<NewFn>(g_next[throwing].load(std::memory_order_relaxed))
                   : g_libstdcxx_new_delete ? LibstdcxxNewTarget<throwing, nothrow>
                                            : ForwardNewTarget<throwing>;
    NewTarget<throwing, nothrow>::fn.store(target, std::memory_order_relaxed);
    return target(n);
  }
  // Resolving, or no operator new to call: NewSlow counts for itself.
  GiveBackCount(n);
  return NewSlow(throwing, nothrow, n);
}

// The countdown reached a sample point (or this thread does not sample now,
// or the allocator is not resolved yet): the countdown is as it was.
template <Fn throwing, Fn nothrow>
__attribute__((noinline)) void* NewAtSamplePoint(size_t n) {
  if (heapwatch::preload::ResolveRealAllocator() && g_libstdcxx_new_delete) {
    return LibstdcxxNewSlow<throwing, nothrow>(n);
  }
  return NewSlow(throwing, nothrow, n);
}

template <Fn throwing, Fn nothrow>
inline void* HotNew(size_t n) {
  if (__builtin_expect(heapwatch::preload::Unsampled(n), 1)) {
    return NewTarget<throwing, nothrow>::fn.load(std::memory_order_relaxed)(n);
  }
  return NewAtSamplePoint<throwing, nothrow>(n);
}

// The filter says p may be a sample (or a bootstrap arena block, or the
// table is not set up yet), or the allocator is not resolved yet.
template <Fn index, typename... Rest>
__attribute__((noinline)) void DeleteMaybeSampled(void* p, Rest... rest) {
  if (heapwatch::preload::ResolveRealAllocator() && g_libstdcxx_new_delete) {
    return heapwatch_own_free(p);  // libstdc++'s delete is free()
  }
  DeleteSlow<void (*)(void*, Rest...)>(index, p, rest...);
}

// Over libstdc++: the real free.
template <typename... Rest>
void RealFreeTarget(void* p, Rest...) {
  heapwatch::preload::g_real.free(p);
}

template <Fn index, typename... Rest>
void ChooseDelete(void* p, Rest... rest);

template <Fn index, typename... Rest>
struct DeleteTarget {
  static constinit inline std::atomic<void (*)(void*, Rest...)> fn{ChooseDelete<index, Rest...>};
};

template <Fn index, typename... Rest>
void ChooseDelete(void* p, Rest... rest) {
  using F = void (*)(void*, Rest...);
  if (heapwatch::preload::ResolveRealAllocator() && Next<F>(index)) {
    F target = g_libstdcxx_new_delete
                   ? RealFreeTarget<Rest...>
                   : reinterpret_cast<F>(g_next[index].load(std::memory_order_relaxed));
    DeleteTarget<index, Rest...>::fn.store(target, std::memory_order_relaxed);
    return target(p, rest...);
  }
  DeleteMaybeSampled<index, Rest...>(p, rest...);
}

template <Fn index, typename... Rest>
inline void HotDelete(void* p, Rest... rest) {
  if (__builtin_expect(!MaybeSampled(p), 1)) {
    return DeleteTarget<index, Rest...>::fn.load(std::memory_order_relaxed)(p, rest...);
  }
  DeleteMaybeSampled<index, Rest...>(p, rest...);
}

}  // namespace

HW_CXX_EXPORT void* operator new(size_t n) { return HotNew<kNew, kNewNothrow>(n); }
HW_CXX_EXPORT void* operator new[](size_t n) { return HotNew<kNewArr, kNewArrNothrow>(n); }

namespace {

// new(nothrow) and new[](nothrow): the shim's malloc over libstdc++ (whose
// nothrow new would run the new-handler loop only if that fails), else the
// next operator, recorded here if the allocator owns it.
template <Fn nothrow>
void* NothrowNew(size_t n, const std::nothrow_t& tag) {
  if (g_libstdcxx_new_delete) {
    if (void* p = LibstdcxxMalloc(n)) return p;
  }
  bool sample = Owns() && ShouldRecord(n);
  auto f = Next<NewNothrowFn>(nothrow);
  void* p = f ? f(n, tag) : FallbackNew(n);
  if (sample) RecordAlloc(p, n);
  return p;
}

}  // namespace

HW_CXX_EXPORT void* operator new(size_t n, const std::nothrow_t& tag) noexcept {
  return NothrowNew<kNewNothrow>(n, tag);
}
HW_CXX_EXPORT void* operator new[](size_t n, const std::nothrow_t& tag) noexcept {
  return NothrowNew<kNewArrNothrow>(n, tag);
}
HW_CXX_EXPORT void* operator new(size_t n, std::align_val_t a) {
  if (Owns()) {
    if (void* p = OwnedAlignedNew(n, a)) return p;
  }
  auto f = Next<NewAlignedFn>(kNewAligned);
  return f ? f(n, a) : FallbackNewAligned(n, a);
}
HW_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a) {
  if (Owns()) {
    if (void* p = OwnedAlignedNew(n, a)) return p;
  }
  auto f = Next<NewAlignedFn>(kNewArrAligned);
  return f ? f(n, a) : FallbackNewAligned(n, a);
}
HW_CXX_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t& tag) noexcept {
  if (Owns()) {
    if (void* p = OwnedAlignedNew(n, a)) return p;
  }
  auto f = Next<NewAlignedNothrowFn>(kNewAlignedNothrow);
  return f ? f(n, a, tag) : FallbackNewAligned(n, a);
}
HW_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t& tag) noexcept {
  if (Owns()) {
    if (void* p = OwnedAlignedNew(n, a)) return p;
  }
  auto f = Next<NewAlignedNothrowFn>(kNewArrAlignedNothrow);
  return f ? f(n, a, tag) : FallbackNewAligned(n, a);
}

// Deletes: record (if the allocator owns new/delete) before the real delete,
// for the same reason as free. Without a next definition, free() is right:
// the fallbacks above allocate with malloc/aligned_alloc. The unaligned ones
// go through their entries (above); over libstdc++ they are free(), the
// shim's own (real_allocator.h).
#define HW_DELETE_ENTRY(Name, Index, Params, Args, ...)                       \
  HW_CXX_EXPORT void Name Params noexcept { return HotDelete<Index __VA_OPT__(, ) __VA_ARGS__> Args; }

HW_DELETE_ENTRY(operator delete, kDel, (void* p), (p))
HW_DELETE_ENTRY(operator delete, kDelSized, (void* p, size_t n), (p, n), size_t)
HW_DELETE_ENTRY(operator delete, kDelNothrow, (void* p, const std::nothrow_t& t), (p, t),
                const std::nothrow_t&)
HW_DELETE_ENTRY(operator delete[], kDelArr, (void* p), (p))
HW_DELETE_ENTRY(operator delete[], kDelArrSized, (void* p, size_t n), (p, n), size_t)
HW_DELETE_ENTRY(operator delete[], kDelArrNothrow, (void* p, const std::nothrow_t& t), (p, t),
                const std::nothrow_t&)

#define HW_UNPAREN(...) __VA_ARGS__
#define HW_DELETE(Name, Index, Params, Args)                                  \
  HW_CXX_EXPORT void Name Params noexcept {                                   \
    using F = void(*) Params;                                                 \
    auto f = reinterpret_cast<F>(g_next[Index].load(std::memory_order_relaxed)); \
    if (__builtin_expect(f != nullptr && !MaybeSampledDelete(p), 1)) return f Args; \
    DeleteSlow<F>(Index, HW_UNPAREN Args);                                    \
  }

HW_DELETE(operator delete, kDelAligned, (void* p, std::align_val_t a), (p, a))
HW_DELETE(operator delete, kDelSizedAligned, (void* p, size_t n, std::align_val_t a), (p, n, a))
HW_DELETE(operator delete, kDelAlignedNothrow,
          (void* p, std::align_val_t a, const std::nothrow_t& t), (p, a, t))
HW_DELETE(operator delete[], kDelArrAligned, (void* p, std::align_val_t a), (p, a))
HW_DELETE(operator delete[], kDelArrSizedAligned, (void* p, size_t n, std::align_val_t a),
          (p, n, a))
HW_DELETE(operator delete[], kDelArrAlignedNothrow,
          (void* p, std::align_val_t a, const std::nothrow_t& t), (p, a, t))
