// The shim's authoritative table of live sampled allocations, keyed by address.
//
// Lock-free open addressing in mmap'd memory (no heap). Any thread may Insert,
// Remove and MaybeContains concurrently, including from a signal handler that
// interrupted another operation on the same thread; the sender thread may
// ForEach at the same time. Probes are bounded (kMaxProbes), so no operation
// costs more as the heap grows; a full neighbourhood makes Insert fail (the
// caller drops the sample and counts `table_full`).
//
// Slot keys: 0 empty, 1 tombstone, 2 being written, anything else an address.
// A slot never returns to empty (only to tombstone), so a lookup may stop at
// the first empty slot: the key it looks for was placed at the first free slot
// of its probe sequence, and every slot before it has stayed non-empty since.
// Tombstones are reused by Insert.
//
// Free-path filter: one counter per group of 8 home slots, counting the live
// entries whose home slot lies in the group. free() of an unsampled pointer
// reads one counter and sees 0 (false positives are rare and only cost a
// probe), however many tombstones have accumulated. The counters are bytes:
// an entry lies within kMaxProbes slots of its home, so a group's count is
// at most 8 + kMaxProbes - 1. Every free() reads a random counter, so the
// filter's size is cache footprint: 8 KiB at the default 64 Ki slots (with
// 32-bit counters, 32 KiB missed L1 on ~80% of frees in
// bench/shim/shim_alloc_workload under cachegrind).
//
// Pinned addresses: Init can count addresses that are never entries, so that
// MaybeContains stays true for them for the table's life. The shim pins the
// blocks of its bootstrap arena (real_allocator.h), which free() must never
// pass to the allocator: free()'s one filter read then covers them too, and
// its fast path needs no second check.
//
// Before Init the filter is two counters that read non-zero: every free()
// takes the slow path, which knows the arena. Init publishes the new filter
// before the new shift (release), and a reader reads the shift (acquire)
// before the filter, so a reader sees either the old shift with either
// filter, or the new shift with the new filter. The old shift indexes
// counters 0 and 1, which Init therefore pins as well.
#ifndef HEAPWATCH_PRELOAD_LIVE_TABLE_H_
#define HEAPWATCH_PRELOAD_LIVE_TABLE_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

namespace heapwatch::preload {

class LiveTable {
 public:
  static constexpr uint32_t kMaxProbes = 64;
  static constexpr uint32_t kGroupShift = 3;  // 8 home slots per filter counter
  static constexpr size_t kMaxPinned = 32;

  struct Entry {
    uint64_t address;
    uint64_t size;
    uint64_t stack_id;
    uint64_t time_ns;
  };

  // `slots` must be a power of two >= 64. The `pinned` addresses (at most
  // kMaxPinned; null if none) read as maybe-present from now on (see the top
  // of the file). Once only, before any Insert. False on bad arguments or
  // without memory; the table then stays as it was.
  bool Init(uint64_t slots, const uint64_t* pinned = nullptr, size_t pinned_count = 0);
  bool initialized() const { return slots_ != nullptr; }

  // False when no free slot lies within kMaxProbes of the home slot.
  bool Insert(const Entry& e);
  // Starts loading what Insert(address) will write: its home slot and filter
  // counter, both likely cache misses. A hint; does nothing before Init.
  void PrefetchForInsert(uint64_t address) const {
    if (!slots_) return;
    const uint64_t home = Home(address);
    __builtin_prefetch(&slots_[home & mask_], 1);
    __builtin_prefetch(&Counter(home >> kGroupShift), 1);
  }
  // Removes `address`; true (and *out filled) if it was present.
  bool Remove(uint64_t address, Entry* out);
  // False means "certainly not present". Cheap: one hash, one load.
  bool MaybeContains(uint64_t address) const {
    uint32_t shift = filter_shift_.load(std::memory_order_acquire);
    return filter_.load(std::memory_order_relaxed)[Hash(address) >> shift].load(
               std::memory_order_relaxed) != 0;
  }
  // The number of entries: the filter's counts, without the pinned ones. A
  // scan of the filter (1/32 of the table's size), for stats once a second;
  // exact when no thread changes the table meanwhile.
  uint64_t Size() const;
  uint64_t capacity() const { return mask_ + 1; }
  // How far past its home slot any entry has ever been placed (tests, stats).
  uint32_t max_probe() const { return max_probe_.load(std::memory_order_relaxed); }

  // Calls fn(const Entry&) once for every entry present throughout the scan.
  // An entry inserted or removed during the scan may or may not be seen.
  // Reads the filter and only the probe windows of occupied groups.
  template <typename Fn>
  void ForEach(Fn&& fn) const;

 private:
  static constexpr uint64_t kEmpty = 0, kTombstone = 1, kBusy = 2;
  struct Slot {
    std::atomic<uint64_t> key;
    std::atomic<uint64_t> size;
    std::atomic<uint64_t> stack_id;
    std::atomic<uint64_t> time_ns;
  };
  static uint64_t Hash(uint64_t address) { return address * 0x9e3779b97f4a7c15ull; }
  uint64_t Home(uint64_t address) const { return Hash(address) >> shift_; }

  // Until Init, the filter is two counters of 1: every lookup says "maybe".
  using FilterCount = std::atomic<uint8_t>;
  static_assert((1u << kGroupShift) + kMaxProbes - 1 + kMaxPinned + 2 <= 255,
                "a group's count fits a byte");
  static FilterCount kAllMaybe[2];
  // The filter counter of a group of home slots.
  FilterCount& Counter(uint64_t group) const { return filter_.load(std::memory_order_relaxed)[group]; }
  Slot* slots_ = nullptr;
  std::atomic<FilterCount*> filter_{kAllMaybe};
  uint64_t mask_ = 0;
  uint32_t shift_ = 63;  // 64 - log2(slots); 63 keeps Home() in [0,1] before Init
  std::atomic<uint32_t> filter_shift_{63};  // shift_ + kGroupShift once initialised
  uint32_t pinned_ = 0;  // counts in the filter that are not entries
  // No count of entries is kept beside the filter: a counter every Insert
  // and Remove changes would share one cache line among all sampling
  // threads, and two threads sampling at full speed spent ~40% of their
  // Insert+Remove time passing it between their cores.
  // The largest probe index any Insert has used. Removes probe no further:
  // tombstones never turn back into empty slots, so in a long-running
  // process a lookup that misses (a filter false positive) would otherwise
  // walk all kMaxProbes slots once the table is full of tombstones. With a
  // sparse table (~1 live sample per 512 KiB of heap) entries sit at or next
  // to their home slot.
  std::atomic<uint32_t> max_probe_{0};
};

template <typename Fn>
void LiveTable::ForEach(Fn&& fn) const {
  if (!slots_) return;
  auto visit = [&](const Slot& s) {
    uint64_t key = s.key.load(std::memory_order_acquire);
    if (key <= kBusy) return;
    Entry e{key, s.size.load(std::memory_order_relaxed),
            s.stack_id.load(std::memory_order_relaxed), s.time_ns.load(std::memory_order_relaxed)};
    std::atomic_thread_fence(std::memory_order_acquire);
    if (s.key.load(std::memory_order_relaxed) != key) return;  // changed under us
    fn(e);
  };
  // Only the probe windows of groups that hold entries: an entry lies within
  // kMaxProbes slots of its home slot, and its home group's counter counts it
  // for as long as it is present. A sparse table is read through its filter
  // (1/64 of its size) and pages nobody wrote stay untouched: at
  // HEAPWATCH_SAMPLE_BYTES=1 the table has 4 Mi slots (128 MiB), and a full
  // read of it took ~0.4 s, which a short-lived process does not have.
  const uint64_t slots = mask_ + 1;
  constexpr uint64_t kWindow = (1u << kGroupShift) + kMaxProbes - 1;
  if (slots <= 2 * kWindow) {
    for (uint64_t i = 0; i < slots; ++i) visit(slots_[i]);
    return;
  }
  // Windows are visited in order of their start; `next` is the first slot
  // (unwrapped) not yet visited. The last windows wrap to slot 0: a wrapped
  // slot j (< kWindow) was already visited iff j >= first_begin, because any
  // window starting before kWindow reaches past it.
  uint64_t next = 0, first_begin = slots;
  for (uint64_t g = 0; g < (slots >> kGroupShift); ++g) {
    if (Counter(g).load(std::memory_order_acquire) == 0) continue;
    uint64_t begin = g << kGroupShift;
    uint64_t end = begin + kWindow;
    if (first_begin == slots) first_begin = begin;
    for (uint64_t i = begin > next ? begin : next; i < end; ++i) {
      if (i < slots) {
        visit(slots_[i]);
      } else if (i - slots < first_begin) {
        visit(slots_[i - slots]);
      }
    }
    if (end > next) next = end;
  }
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_LIVE_TABLE_H_
