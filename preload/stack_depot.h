// Interned stacks: stack_id -> program counters, shared by every thread.
//
// Why it exists: after a drop or a reconnect the sender re-sends the whole live
// table, whose entries name stacks by id only; the stacks of entries whose
// alloc events were dropped must still be sendable. So sampled allocations
// intern their stack here (lock-free, append-only, mmap'd), and ring events
// carry only the id.
//
// Thread safety: Intern from any thread, concurrently (also re-entrantly from
// a signal handler); Find from any thread. An id being interned by another
// thread is "not ready" until its pcs are published.
//
// The pcs' space (16 MiB by default, 32 frames for each of the table's 64 Ki
// slots) is reserved without access and made usable kCommitBytes at a time as
// stacks arrive: a process that calls mlockall(MCL_CURRENT) had all of it
// populated and locked (+16 MiB of RSS under the shim), and strict
// overcommit charged all of it at start.
#ifndef HEAPWATCH_PRELOAD_STACK_DEPOT_H_
#define HEAPWATCH_PRELOAD_STACK_DEPOT_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

namespace heapwatch::preload {

// A non-zero 64-bit hash of the pcs.
uint64_t HashStack(const uint64_t* pcs, uint32_t depth);

// The stack id of pcs captured in unload epoch `epoch` (modules.h): non-zero
// (0 means "no stack" on the wire), the epoch's low wire::kStackEpochBits
// bits on top and a hash of the pcs and the whole epoch below, so equal pcs
// captured on either side of an unload have different ids.
uint64_t StackId(const uint64_t* pcs, uint32_t depth, uint64_t epoch);

class StackDepot {
 public:
  static constexpr uint32_t kMaxProbes = 64;
  static constexpr uint64_t kCommitBytes = 64 << 10;

  // `buckets` a power of two; `pc_capacity` total pcs storable.
  bool Init(uint64_t buckets, uint64_t pc_capacity);
  // The address space Init maps and reserves.
  static uint64_t AddressSpace(uint64_t buckets, uint64_t pc_capacity) {
    return buckets * sizeof(Bucket) + pc_capacity * sizeof(uint64_t);
  }

  // Makes `id` findable with these pcs. False when the depot is full (the
  // caller must not record a sample naming `id`).
  bool Intern(uint64_t id, const uint64_t* pcs, uint32_t depth);

  enum class FindResult { kFound, kNotReady, kMissing };
  // On kFound, *pcs points into the depot (stable forever) and *depth is set.
  FindResult Find(uint64_t id, const uint64_t** pcs, uint32_t* depth) const;

  uint64_t stacks() const { return count_.load(std::memory_order_relaxed); }
  // Bytes of the pcs' space made usable so far (tests).
  uint64_t committed_bytes() const { return pcs_committed_.load(std::memory_order_relaxed); }

 private:
  static constexpr uint32_t kFailed = UINT32_MAX;
  // Makes pcs_[0, end) usable; false if the kernel refuses (no memory).
  bool CommitPcs(uint64_t end);
  struct Bucket {
    std::atomic<uint64_t> id;
    std::atomic<uint32_t> depth_plus_one;  // 0 = not ready, kFailed = no room
    uint32_t padding;
    std::atomic<uint64_t> offset;
  };
  Bucket* buckets_ = nullptr;
  uint64_t mask_ = 0;
  uint64_t* pcs_ = nullptr;
  uint64_t pc_capacity_ = 0;
  std::atomic<uint64_t> pcs_used_{0};
  std::atomic<uint64_t> pcs_committed_{0};  // bytes from pcs_, a multiple of the page
  std::atomic<uint64_t> count_{0};
};

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_STACK_DEPOT_H_
