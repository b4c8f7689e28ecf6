#include "live_table.h"

#include "raw_memory.h"

namespace heapwatch::preload {

LiveTable::FilterCount LiveTable::kNoFilter[2] = {};

bool LiveTable::Init(uint64_t slots) {
  if (slots < 64 || (slots & (slots - 1)) != 0) return false;
  auto* table = static_cast<Slot*>(MapZeroed(slots * sizeof(Slot)));
  auto* filter =
      static_cast<FilterCount*>(MapZeroed((slots >> kGroupShift) * sizeof(FilterCount)));
  if (!table || !filter) {
    Unmap(table, slots * sizeof(Slot));
    Unmap(filter, (slots >> kGroupShift) * sizeof(FilterCount));
    return false;
  }
  uint32_t log2 = 0;
  while ((1ull << log2) < slots) ++log2;
  mask_ = slots - 1;
  shift_ = 64 - log2;
  filter_shift_ = shift_ + kGroupShift;
  slots_ = table;
  filter_ = filter;
  return true;
}

bool LiveTable::Insert(const Entry& e) {
  if (!slots_ || e.address <= kBusy) return false;
  const uint64_t home = Home(e.address);
  for (uint32_t i = 0; i < kMaxProbes; ++i) {
    Slot& s = slots_[(home + i) & mask_];
    uint64_t key = s.key.load(std::memory_order_relaxed);
    while (key == kEmpty || key == kTombstone) {
      if (s.key.compare_exchange_weak(key, kBusy, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        s.size.store(e.size, std::memory_order_relaxed);
        s.stack_id.store(e.stack_id, std::memory_order_relaxed);
        s.time_ns.store(e.time_ns, std::memory_order_relaxed);
        // Count before publishing, so a concurrent Remove that finds the key
        // never decrements a counter below zero.
        filter_[home >> kGroupShift].fetch_add(1, std::memory_order_relaxed);
        size_.fetch_add(1, std::memory_order_relaxed);
        s.key.store(e.address, std::memory_order_release);
        return true;
      }
    }
  }
  return false;
}

bool LiveTable::Remove(uint64_t address, Entry* out) {
  if (!slots_ || address <= kBusy || !MaybeContains(address)) return false;
  const uint64_t home = Home(address);
  for (uint32_t i = 0; i < kMaxProbes; ++i) {
    Slot& s = slots_[(home + i) & mask_];
    uint64_t key = s.key.load(std::memory_order_acquire);
    if (key == kEmpty) return false;
    if (key != address) continue;
    Entry e{address, s.size.load(std::memory_order_relaxed),
            s.stack_id.load(std::memory_order_relaxed), s.time_ns.load(std::memory_order_relaxed)};
    if (!s.key.compare_exchange_strong(key, kTombstone, std::memory_order_acq_rel)) {
      return false;  // a racing Remove of the same address (a double free) won
    }
    filter_[home >> kGroupShift].fetch_sub(1, std::memory_order_relaxed);
    size_.fetch_sub(1, std::memory_order_relaxed);
    if (out) *out = e;
    return true;
  }
  return false;
}

}  // namespace heapwatch::preload
