#include "stack_depot.h"

#include <heapwatch/wire.h>

#include "raw_memory.h"

namespace heapwatch::preload {

uint64_t HashStack(const uint64_t* pcs, uint32_t depth) {
  uint64_t h = 0xcbf29ce484222325ull ^ depth;
  for (uint32_t i = 0; i < depth; ++i) {
    h ^= pcs[i];
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h ? h : 1;
}

uint64_t StackId(const uint64_t* pcs, uint32_t depth, uint64_t epoch) {
  constexpr uint32_t kHashBits = 64 - wire::kStackEpochBits;
  uint64_t h = HashStack(pcs, depth) ^ (epoch * 0x9e3779b97f4a7c15ull);
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 31;
  h &= (uint64_t{1} << kHashBits) - 1;
  return (epoch << kHashBits) | (h ? h : 1);
}

bool StackDepot::Init(uint64_t buckets, uint64_t pc_capacity) {
  if (buckets < 64 || (buckets & (buckets - 1)) != 0) return false;
  auto* b = static_cast<Bucket*>(MapZeroed(buckets * sizeof(Bucket)));
  auto* p = static_cast<uint64_t*>(MapReserved(pc_capacity * sizeof(uint64_t)));
  if (!b || !p) {
    Unmap(b, buckets * sizeof(Bucket));
    Unmap(p, pc_capacity * sizeof(uint64_t));
    return false;
  }
  buckets_ = b;
  mask_ = buckets - 1;
  pcs_ = p;
  pc_capacity_ = pc_capacity;
  return true;
}

bool StackDepot::Intern(uint64_t id, const uint64_t* pcs, uint32_t depth) {
  if (!buckets_ || id == 0) return false;
  for (uint32_t i = 0; i < kMaxProbes; ++i) {
    Bucket& b = buckets_[(id + i) & mask_];
    uint64_t cur = b.id.load(std::memory_order_acquire);
    if (cur == 0 &&
        b.id.compare_exchange_strong(cur, id, std::memory_order_acq_rel)) {
      uint64_t off = pcs_used_.fetch_add(depth, std::memory_order_relaxed);
      if (off + depth > pc_capacity_ || !CommitPcs(off + depth)) {
        b.depth_plus_one.store(kFailed, std::memory_order_release);
        return false;
      }
      for (uint32_t k = 0; k < depth; ++k) pcs_[off + k] = pcs[k];
      b.offset.store(off, std::memory_order_relaxed);
      count_.fetch_add(1, std::memory_order_relaxed);
      b.depth_plus_one.store(depth + 1, std::memory_order_release);
      return true;
    }
    if (cur == id) {
      return b.depth_plus_one.load(std::memory_order_acquire) != kFailed;
    }
  }
  return false;
}

// Threads that cross into new space each make it usable (mprotect of a range
// another thread made usable already changes nothing) before they raise the
// mark; a thread whose pcs lie below the mark it reads writes at once.
bool StackDepot::CommitPcs(uint64_t end) {
  const uint64_t end_bytes = end * sizeof(uint64_t);
  uint64_t have = pcs_committed_.load(std::memory_order_acquire);
  if (end_bytes <= have) return true;
  const uint64_t capacity_bytes = pc_capacity_ * sizeof(uint64_t);
  uint64_t want = (end_bytes + kCommitBytes - 1) / kCommitBytes * kCommitBytes;
  if (want > capacity_bytes) want = capacity_bytes;
  if (!CommitPages(reinterpret_cast<char*>(pcs_) + have, want - have)) return false;
  while (have < want && !pcs_committed_.compare_exchange_weak(have, want, std::memory_order_release,
                                                              std::memory_order_acquire)) {
  }
  return true;
}

StackDepot::FindResult StackDepot::Find(uint64_t id, const uint64_t** pcs,
                                        uint32_t* depth) const {
  if (!buckets_ || id == 0) return FindResult::kMissing;
  for (uint32_t i = 0; i < kMaxProbes; ++i) {
    const Bucket& b = buckets_[(id + i) & mask_];
    uint64_t cur = b.id.load(std::memory_order_acquire);
    if (cur == 0) return FindResult::kMissing;
    if (cur != id) continue;
    uint32_t d = b.depth_plus_one.load(std::memory_order_acquire);
    if (d == 0) return FindResult::kNotReady;
    if (d == kFailed) return FindResult::kMissing;
    *pcs = pcs_ + b.offset.load(std::memory_order_relaxed);
    *depth = d - 1;
    return FindResult::kFound;
  }
  return FindResult::kMissing;
}

}  // namespace heapwatch::preload
