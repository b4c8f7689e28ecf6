#include "unloaded_code.h"

#include <sched.h>
#include <sys/mman.h>

#include <atomic>

#include "raw_memory.h"
#include "raw_syscall.h"
#include "unwinder.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace heapwatch::preload {
namespace {

constexpr size_t kSnapshotRanges = 1024;
constexpr size_t kSnapshotBytes = 2 * kSnapshotRanges * sizeof(CodeRange);

// dlclose may run in several threads at once: the reservations are theirs
// in turn. A spin lock, held for a few system calls at most; a forked child
// frees it (UnloadedCodeForkChild).
std::atomic<bool> g_lock{false};
constinit CodeReservations g_reservations HEAPWATCH_LARGE_ZEROED;  // raw_memory.h

void Lock() {
  while (g_lock.exchange(true, std::memory_order_acquire)) sys::SchedYield();
}
void Unlock() { g_lock.store(false, std::memory_order_release); }

}  // namespace

void SnapshotCode(CodeSnapshot* s) {
  *s = CodeSnapshot{};
  if (!TraceCachesEnabled()) return;
  s->ranges = static_cast<CodeRange*>(MapZeroed(kSnapshotBytes));
  if (s->ranges) s->count = LoadedCode(s->ranges, kSnapshotRanges);
}

void KeepUnloadedCodeAway(CodeSnapshot* s) {
  if (!TraceCachesEnabled()) return;
  // Without a list from before (no memory for it), or one that did not
  // fit, whatever went cannot be told: the caches retire.
  CodeRange gone[64];
  constexpr size_t kMaxGone = sizeof(gone) / sizeof(gone[0]);
  bool replaced = false, complete = false;
  size_t n_gone = 0;
  if (s->ranges) {
    CodeRange* after = s->ranges + kSnapshotRanges;
    size_t n_after = LoadedCode(after, kSnapshotRanges);
    n_gone = GoneCode(s->ranges, s->count < kSnapshotRanges ? s->count : kSnapshotRanges, after,
                      n_after < kSnapshotRanges ? n_after : kSnapshotRanges, gone, kMaxGone, &replaced);
    complete = s->count <= kSnapshotRanges && n_after <= kSnapshotRanges && n_gone <= kMaxGone;
    Unmap(s->ranges, kSnapshotBytes);
  }
  *s = CodeSnapshot{};
  if (n_gone == 0 && complete) return;
  ForgetUnmappedCode();
  Lock();
  bool kept = complete && !replaced;
  for (size_t i = 0; kept && i < n_gone; ++i) kept = g_reservations.Reserve(gone[i]);
  if (!kept) {
    RetireTraceCaches();
    g_reservations.ReleaseAll();
  }
  Unlock();
}

HEAPWATCH_FORK_CHILD_CODE void UnloadedCodeForkChild() { g_lock.store(false, std::memory_order_relaxed); }

size_t GoneCode(const CodeRange* before, size_t n_before, const CodeRange* after, size_t n_after,
                CodeRange* gone, size_t max_gone, bool* replaced) {
  size_t n_gone = 0;
  for (size_t i = 0; i < n_before; ++i) {
    const CodeRange& b = before[i];
    bool present = false, overlapped = false;
    for (size_t j = 0; j < n_after && !present; ++j) {
      const CodeRange& a = after[j];
      if (a.lo == b.lo && a.hi == b.hi && a.id == b.id) {
        present = true;
      } else if (a.lo < b.hi && b.lo < a.hi) {
        overlapped = true;
      }
    }
    if (present) continue;
    if (overlapped) *replaced = true;
    if (n_gone < max_gone) gone[n_gone] = b;
    ++n_gone;
  }
  return n_gone;
}

bool CodeReservations::Reserve(const CodeRange& r) {
  for (size_t i = 0; i < count_; ++i) {
    if (ranges_[i].lo == r.lo && ranges_[i].hi == r.hi) return true;
  }
  if (count_ == kMaxReservations || r.hi <= r.lo) return false;
  void* want = reinterpret_cast<void*>(r.lo);
  void* got = sys::Mmap(want, r.hi - r.lo, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (got == MAP_FAILED) return false;
  if (got != want) {  // a kernel older than 4.17 took the address as a hint
    sys::Munmap(got, r.hi - r.lo);
    return false;
  }
  ranges_[count_++] = r;
  return true;
}

void CodeReservations::ReleaseAll() {
  for (size_t i = 0; i < count_; ++i) sys::Munmap(reinterpret_cast<void*>(ranges_[i].lo), ranges_[i].hi - ranges_[i].lo);
  count_ = 0;
}

}  // namespace heapwatch::preload
