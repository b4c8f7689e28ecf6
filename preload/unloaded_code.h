// Where dlclose unmapped code, no new code until libunwind's trace caches
// are done with it (unwinder.h says why). The dlclose interposer
// (dl_interposer.cc) lists the loaded objects' code before and after the
// real dlclose; each range that went is reserved, mapped PROT_NONE and
// MAP_NORESERVE (address space only, no memory), so that ld.so maps the
// objects loaded later elsewhere. Where a range cannot be reserved (other
// code already took it, there are kMaxReservations, a list did not fit),
// the trace caches are retired instead and every reservation goes: no cache
// left in use has seen the code they kept.
#ifndef HEAPWATCH_PRELOAD_UNLOADED_CODE_H_
#define HEAPWATCH_PRELOAD_UNLOADED_CODE_H_

#include <stddef.h>
#include <stdint.h>

namespace heapwatch::preload {

// An executable PT_LOAD segment of a loaded object, in whole pages.
struct CodeRange {
  uintptr_t lo, hi;
  uint64_t id;  // the object's GNU build-id or, without one, its name, hashed
};

// The loaded objects' code (dl_iterate_phdr; in modules.cc, which reads
// build-ids). Writes at most `max`; returns how many there are.
size_t LoadedCode(CodeRange* out, size_t max);

// The ranges of `before` that no range of `after` matches (same lo, hi and
// id), at most `max_gone` of them in `gone`; returns how many there are.
// *replaced is set when one of them overlaps a range of `after`: other code
// took its place.
size_t GoneCode(const CodeRange* before, size_t n_before, const CodeRange* after, size_t n_after,
                CodeRange* gone, size_t max_gone, bool* replaced);

// The reserved ranges. Not thread-safe: the caller serializes.
class CodeReservations {
 public:
  static constexpr size_t kMaxReservations = 64;
  // Maps [r.lo, r.hi) PROT_NONE where nothing is mapped (MAP_FIXED_NOREPLACE).
  // True if it is reserved now (or already was); false if anything is
  // mapped there or the list is full.
  bool Reserve(const CodeRange& r);
  // Unmaps every reservation.
  void ReleaseAll();
  size_t size() const { return count_; }

 private:
  CodeRange ranges_[kMaxReservations] = {};
  size_t count_ = 0;
};

// The dlclose interposer's two halves, around the real dlclose. Nothing to
// do (and nothing done) where threads take no trace caches.
struct CodeSnapshot {
  CodeRange* ranges = nullptr;  // kSnapshotRanges before, as many after
  size_t count = 0;             // how many objects' code ranges there were
};
void SnapshotCode(CodeSnapshot* s);
void KeepUnloadedCodeAway(CodeSnapshot* s);
// In a forked child: the lock around the reservations is free.
void UnloadedCodeForkChild();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_UNLOADED_CODE_H_
