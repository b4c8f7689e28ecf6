#include "live_table.h"

#include "raw_memory.h"

namespace heapwatch::preload {

LiveTable::FilterCount LiveTable::kAllMaybe[2] = {1, 1};

bool LiveTable::Init(uint64_t slots, const uint64_t* pinned, size_t pinned_count) {
  if (slots < 64 || (slots & (slots - 1)) != 0 || slots_ || pinned_count > kMaxPinned) {
    return false;
  }
  // Entries land at random slots, so a process that samples for a while
  // touches every page of its table. The default table (64 Ki slots) is one
  // huge page: one fault instead of 512, which cost ~6 ms of a process's CPU
  // (~12 us a fault, on the development VM). Bigger tables serve heavy
  // sampling (R < 64 KiB), where a short process touches few of their pages.
  const size_t table_bytes = slots * sizeof(Slot);
  const size_t filter_bytes = (slots >> kGroupShift) * sizeof(FilterCount);
  auto* table = static_cast<Slot*>(table_bytes == kHugePageBytes ? MapZeroedHuge(table_bytes)
                                                                 : MapZeroed(table_bytes));
  auto* filter = static_cast<FilterCount*>(MapZeroed(filter_bytes));
  if (!table || !filter) {
    Unmap(table, table_bytes);
    Unmap(filter, filter_bytes);
    return false;
  }
  uint32_t log2 = 0;
  while ((1ull << log2) < slots) ++log2;
  mask_ = slots - 1;
  shift_ = 64 - log2;
  slots_ = table;
  const uint32_t filter_shift = shift_ + kGroupShift;
  // Counters 0 and 1 for readers still on the old shift (see the header).
  filter[0].fetch_add(1, std::memory_order_relaxed);
  filter[1].fetch_add(1, std::memory_order_relaxed);
  for (size_t i = 0; i < pinned_count; ++i) {
    filter[Hash(pinned[i]) >> filter_shift].fetch_add(1, std::memory_order_relaxed);
  }
  pinned_ = static_cast<uint32_t>(2 + pinned_count);
  filter_.store(filter, std::memory_order_relaxed);
  filter_shift_.store(filter_shift, std::memory_order_release);
  return true;
}

uint64_t LiveTable::Size() const {
  if (!slots_) return 0;
  // Eight counters a load (the filter is mmap'd, 8-byte aligned, and at
  // least 8 counters long), summed in place: pairs of bytes into four
  // 16-bit lanes (<= 510 each), then the lanes by a multiply. Byte by byte
  // this was ~11 instructions a counter, 90k for the default filter, once a
  // second: visible in callgrind counts of processes that mostly wait.
  const auto* words = reinterpret_cast<const uint64_t*>(filter_.load(std::memory_order_relaxed));
  constexpr uint64_t kLowBytes = 0x00ff00ff00ff00ffull;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < ((mask_ + 1) >> kGroupShift) / 8; ++i) {
    uint64_t w = __atomic_load_n(&words[i], __ATOMIC_RELAXED);
    uint64_t pairs = (w & kLowBytes) + ((w >> 8) & kLowBytes);
    sum += (pairs * 0x0001000100010001ull) >> 48;
  }
  return sum > pinned_ ? sum - pinned_ : 0;
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
        Counter(home >> kGroupShift).fetch_add(1, std::memory_order_relaxed);
        // Also before publishing: a Remove of this address (which the
        // application can only make after this allocation returned) must
        // probe this far.
        uint32_t seen = max_probe_.load(std::memory_order_relaxed);
        while (i > seen && !max_probe_.compare_exchange_weak(seen, i, std::memory_order_relaxed)) {
        }
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
  const uint32_t probes = max_probe_.load(std::memory_order_relaxed) + 1;
  for (uint32_t i = 0; i < probes; ++i) {
    Slot& s = slots_[(home + i) & mask_];
    uint64_t key = s.key.load(std::memory_order_acquire);
    if (key == kEmpty) return false;
    if (key != address) continue;
    Entry e{address, s.size.load(std::memory_order_relaxed),
            s.stack_id.load(std::memory_order_relaxed), s.time_ns.load(std::memory_order_relaxed)};
    if (!s.key.compare_exchange_strong(key, kTombstone, std::memory_order_acq_rel)) {
      return false;  // a racing Remove of the same address (a double free) won
    }
    Counter(home >> kGroupShift).fetch_sub(1, std::memory_order_relaxed);
    if (out) *out = e;
    return true;
  }
  return false;
}

}  // namespace heapwatch::preload
