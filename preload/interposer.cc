// The interposed C allocation API. Thin on purpose: ask the thread's sampler
// (inline fast path), forward to the real allocator, call the recorder.
// Frees of sampled blocks are recorded before the real free (recorder.h).
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_paths.h"
#include "libc_functions.h"
#include "real_allocator.h"
#include "recorder.h"
#include "sender.h"
#include "text.h"

#define HW_EXPORT extern "C" __attribute__((visibility("default")))
#define HW_NOINLINE __attribute__((noinline))

using heapwatch::preload::g_real;
using heapwatch::preload::InArena;
using heapwatch::preload::MaybeSampled;
using heapwatch::preload::RecordAlloc;
using heapwatch::preload::SampleSlowPath;
using heapwatch::preload::Unsampled;

namespace {

using heapwatch::preload::AllocSlow;

// posix_memalign's, which returns its block through `out`.
HW_NOINLINE int PosixMemalignSlow(void** out, size_t alignment, size_t size) {
  if (!SampleSlowPath(size)) return g_real.posix_memalign(out, alignment, size);
  int rc = g_real.posix_memalign(out, alignment, size);
  if (rc == 0) RecordAlloc(*out, size);
  return rc;
}

HW_NOINLINE void* ReallocSlow(void* p, size_t size) {
  if (InArena(p)) return heapwatch::preload::MoveFromArena(p, size, [size] { return malloc(size); });
  // realloc(p, 0) may free p and return NULL; any other NULL leaves p live.
  return heapwatch::preload::ResizeSlow(p, size, size == 0,
                                        [p, size] { return g_real.realloc(p, size); });
}

}  // namespace

HW_EXPORT void* malloc(size_t size) {
  if (__builtin_expect(Unsampled(size), 1)) return g_real.malloc(size);
  return AllocSlow([size] { return g_real.malloc(size); }, size, /*sender_heap=*/true);
}

HW_EXPORT void free(void* p) {
  if (__builtin_expect(!MaybeSampled(p), 1)) return g_real.free(p);
  heapwatch::preload::FreeSlow(p, [](void* q) { g_real.free(q); });
}

HW_EXPORT void* calloc(size_t n, size_t m) {
  size_t total;
  if (__builtin_mul_overflow(n, m, &total)) return g_real.calloc(n, m);  // ENOMEM there
  if (__builtin_expect(Unsampled(total), 1)) return g_real.calloc(n, m);
  return AllocSlow([n, m] { return g_real.calloc(n, m); }, total, /*sender_heap=*/true);
}

HW_EXPORT void* realloc(void* p, size_t size) {
  if (!p) return malloc(size);
  if (__builtin_expect(!MaybeSampled(p) && Unsampled(size), 1)) return g_real.realloc(p, size);
  return ReallocSlow(p, size);
}

HW_EXPORT void* reallocarray(void* p, size_t n, size_t m) {
  // Always through our realloc: the allocator underneath may not have its own
  // reallocarray, and glibc's would realloc on glibc's heap.
  size_t total;
  if (__builtin_mul_overflow(n, m, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, total);
}

HW_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) {
  if (__builtin_expect(Unsampled(size), 1)) return g_real.posix_memalign(out, alignment, size);
  return PosixMemalignSlow(out, alignment, size);
}

HW_EXPORT void* aligned_alloc(size_t alignment, size_t size) {
  if (__builtin_expect(Unsampled(size), 1)) return g_real.aligned_alloc(alignment, size);
  return AllocSlow([alignment, size] { return g_real.aligned_alloc(alignment, size); }, size);
}

HW_EXPORT void* memalign(size_t alignment, size_t size) {
  if (__builtin_expect(Unsampled(size), 1)) return g_real.memalign(alignment, size);
  return AllocSlow([alignment, size] { return g_real.memalign(alignment, size); }, size);
}

HW_EXPORT void* valloc(size_t size) {
  if (__builtin_expect(Unsampled(size), 1)) return g_real.valloc(size);
  return AllocSlow([size] { return g_real.valloc(size); }, size);
}

HW_EXPORT void* pvalloc(size_t size) {
  if (__builtin_expect(Unsampled(size), 1)) return g_real.pvalloc(size);
  return AllocSlow([size] { return g_real.pvalloc(size); }, size);
}

// C23's sized frees (glibc 2.43). The size and the alignment only tell the
// allocator what it could look up, so free() is a correct one over any
// allocator. glibc's jump to free through its PLT, so to the shim (checked
// in a Debian sid chroot, glibc 2.43-7); but jemalloc (its sources after
// 5.3.0) defines its own, and a program built against glibc 2.43 binds
// free_sized to an allocator preloaded after a shim without them: every
// sampled block freed so would stay live in the table for good. Over an
// older glibc they exist now too.
HW_EXPORT void free_sized(void* p, size_t) { free(p); }

HW_EXPORT void free_aligned_sized(void* p, size_t, size_t) { free(p); }

HW_EXPORT size_t malloc_usable_size(void* p) {
  if (InArena(p)) return heapwatch::preload::ArenaBlockSize(p);
  return g_real.malloc_usable_size(p);
}

// Our own malloc and free, not whatever the dynamic linker binds the names to
// (C++ new and delete over libstdc++).
extern "C" void* heapwatch_own_malloc(size_t) __attribute__((alias("malloc"), visibility("hidden"), copy(malloc)));
extern "C" void heapwatch_own_free(void*) __attribute__((alias("free"), visibility("hidden"), copy(free)));

namespace {

__attribute__((constructor)) void HeapwatchStart() {
  heapwatch::preload::ResolveRealAllocator();
  // If an allocator was preloaded before the shim (or the executable has its
  // own), its malloc is the one the program calls and ours is never reached
  // for most allocations: say so once and stay out of the way.
  bool other_first = heapwatch::preload::AllocatorPrecedes();
  if (other_first && !getenv("HEAPWATCH_DISABLE")) {
    const char* object = heapwatch::preload::PrecedingAllocatorObject();
    const char* base = heapwatch::preload::LastOf(object, '/');
    base = base ? base + 1 : object;
    if (*object == '\0') {
      heapwatch::preload::SayOnce("allocator",
                                  "the executable has a malloc of its own (an allocator linked in); "
                                  "profiling disabled");
    } else if (heapwatch::preload::StartsWith(base, "libc.so")) {
      // The C library comes after every LD_PRELOAD entry: the shim was
      // loaded later, by dlopen.
      heapwatch::preload::SayOnce("allocator",
                                  "libheapwatch.so was loaded after the C library (by dlopen?), not "
                                  "preloaded; profiling disabled (load it with LD_PRELOAD)");
    } else {
      char detail[300];
      heapwatch::preload::Libc().snprintf(detail, sizeof detail,
                                          "%s); profiling disabled (put libheapwatch.so first)", object);
      heapwatch::preload::SayOnce("allocator", "another allocator precedes libheapwatch.so in LD_PRELOAD (",
                                  detail);
    }
  }
  heapwatch::preload::StartRecorder(other_first);
}

__attribute__((destructor)) void HeapwatchStop() {
  heapwatch::preload::FlushSenderAtExit(1000);
}

}  // namespace
