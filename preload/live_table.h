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
// Free-path filters: free() of an unsampled pointer must learn so from one
// load. Two byte arrays of cells, kept exact at all times by Insert and
// Remove, summarise the table: the coarse filter (one cell per group of 8
// home slots; the scan's index too, see ForEach) and the fine filter (one
// cell per home slot). free() reads one of them, the one ChooseFilter picked
// for the present number of entries: the coarse one is 8 KiB at the default
// 64 Ki slots and stays in L1/L2, but with N entries about N/8192 of all
// frees find a non-empty cell, which at a 2 GiB heap (~4000 live samples at
// the default rate) was a third of them, each probing a table that lives in
// DRAM. The fine filter keeps that eight times rarer for a bigger footprint.
//
// A cell is 0 (no entry), 0x01..0x3f (exactly one entry, whose 6-bit
// fingerprint this is), 0x40 | x (exactly two, x the XOR of their
// fingerprints) or 0x80 | n (n entries, fingerprints unknown). A free() that
// finds a non-empty cell compares the fingerprint before it touches the
// table: most pointers that share a cell with one sample are turned away
// there, without a cache miss. When one of two leaves, the XOR gives back the
// other's fingerprint, so a long-lived sample keeps it while short-lived ones
// come and go in its cell (a count alone lost it for good: in a long
// churn, ~all cells of long-lived samples, see the unit test). Only a third
// entry turns a cell into a count until it empties. Every change is one
// compare-and-swap of the cell. An entry lies within kMaxProbes slots of its
// home, so a coarse cell counts at most 8 + kMaxProbes - 1 entries, a fine
// one kMaxProbes (plus pins).
//
// Pinned addresses: Init and Pin count addresses that are never entries, so
// that MaybeContains stays true for them for the table's life. The shim pins
// the blocks of its bootstrap arena (real_allocator.h), which free() must
// never pass to the allocator: those made before the table (Init) and those
// that serve its sender thread later (Pin). free()'s one filter read then
// covers them too, and its fast path needs no second check.
//
// The index is a 32-bit multiplicative hash of the address's low 32 bits
// (a 64-bit one took one instruction more on every free: the constant does
// not fit an immediate), its top bits the home slot: addresses 4 GiB apart
// share a home, which a table sized for the live samples (2,000 a GiB at
// the default rate) sees as rarely as any other collision. The cell's
// fingerprint comes from another hash (Fingerprint).
//
// The filter free() reads is one word: the address of its cell 0, which
// lies at an offset of the filter's shift past a 64-byte boundary, so the
// word's low 5 bits are the shift (x86's 32-bit shifts use only those). A
// reader never pairs one filter with another's shift, and neither needs
// masking: free() is 6 instructions. Before Init it is two cells that read
// "1 entry" under shift 31: every free() takes the slow path, which knows
// the arena.
#ifndef HEAPWATCH_PRELOAD_LIVE_TABLE_H_
#define HEAPWATCH_PRELOAD_LIVE_TABLE_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

namespace heapwatch::preload {

class LiveTable {
 public:
  static constexpr uint32_t kMaxProbes = 64;
  // A table of this size is one transparent huge page (raw_memory.h).
  static constexpr uint64_t kHugeTableBytes = uint64_t{2} << 20;
  static constexpr uint32_t kGroupShift = 3;  // 8 home slots per coarse cell
  static constexpr size_t kMaxPinned = 48;

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
  // Pins one more address, at any time after Init, from any thread (the
  // shim's sender). False before Init or once kMaxPinned are pinned.
  bool Pin(uint64_t address);
  // In a child copied while a thread not in it held the pins' lock (Pin,
  // or ReadFilter moving the pins): frees the lock, which nobody would
  // free, and the child's first switch to the fine filter would wait on
  // for good. What that thread left half done reads as maybe-present at
  // worst, but for an address it was pinning just then.
  void ForkChild() {
    if (fine_pinned_.load(std::memory_order_relaxed) == kPinsBusy) {
      fine_pinned_.store(kPinsNotInFine, std::memory_order_relaxed);
    }
  }
  // The address space Init maps for `slots`, at most (a table of one huge
  // page maps one more for its alignment, and gives it back at once).
  static uint64_t AddressSpace(uint64_t slots) {
    const uint64_t table = slots * sizeof(Slot);
    return (table == kHugeTableBytes ? 2 * table : table) + FilterBytes(slots >> kGroupShift) +
           FilterBytes(slots);
  }
  bool initialized() const { return slots_ != nullptr; }
  // Before Init, with no address to pin: free() reads a filter of no entries
  // (every free() takes its fast path) until Init maps the table. The shim's
  // state before a process's first sample, which most processes never take.
  void ReadNothingUntilInit() {
    if (!slots_) read_.store(&kNone.cells[0], std::memory_order_release);
  }

  // False when no free slot lies within kMaxProbes of the home slot.
  bool Insert(const Entry& e);
  // Starts loading what Insert(address) will write: its home slot and two
  // filter cells, all likely cache misses. A hint; does nothing before Init.
  // Always inlined: GCC 12 finds a function that only prefetches "pure"
  // and, its result being void, deletes the call as dead code. Merely
  // `inline`, it was not inlined into RecordAlloc and no prefetch was left.
  __attribute__((always_inline)) void PrefetchForInsert(uint64_t address) const {
    if (!slots_) return;
    const uint64_t home = Home(address);
    __builtin_prefetch(&slots_[home], 1);
    __builtin_prefetch(&coarse_[home >> kGroupShift], 1);
    __builtin_prefetch(&fine_[home], 1);
  }
  // Removes `address`; true (and *out filled) if it was present.
  bool Remove(uint64_t address, Entry* out);
  // False means "certainly not present". Cheap: one hash, two loads.
  bool MaybeContains(uint64_t address) const {
#if defined(__x86_64__)
    // The hash (Hash, below) and the shift in three instructions, the cell
    // compared in memory (cmpb), not loaded and tested: GCC does not fold
    // an atomic load into a compare, and this is free()'s fast path (6
    // instructions). A relaxed byte load either way.
    const Cell* cells = read_.load(std::memory_order_acquire);
    uint64_t index;
    bool nonzero;
    asm("imull %[mul], %k[address], %k[index]\n\t"
        "shrl %%cl, %k[index]\n\t"
        "cmpb $0, (%[cells],%q[index])"
        : [index] "=&r"(index), "=@ccne"(nonzero)
        : [address] "r"(address), [cells] "c"(cells), [mul] "i"(kHashMul)
        : "memory");
    return nonzero;
#else
    return ReadCell(address) != 0;
#endif
  }
  // What Remove checks before it probes: MaybeContains, then the cell's
  // fingerprint. False means "certainly not present".
  bool MaybeHolds(uint64_t address) const {
    return CellMayHold(ReadCell(address), Fingerprint(address));
  }
  // Points free() at the filter that suits the present number of entries
  // (see the top of the file); the sender calls it every round. Both
  // filters are always exact, so a switch is one store.
  void ChooseFilter();
  // Maps both filters now (see PrefaultPages) where each is at most
  // `max_bytes`: free() reads them from the start, and a read of an
  // untouched page faults, then the first sample's write faults again.
  void PrefaultFilters(size_t max_bytes);
  // ChooseFilter's two choices, for tests. No effect before Init.
  void ReadFilter(bool fine);
  // Whether free() reads the fine filter.
  bool reads_fine_filter() const;
  // The number of entries: the coarse filter's counts, without the pinned
  // ones. A scan of the coarse filter (1/256 of the table's size), for stats
  // and ChooseFilter; exact when no thread changes the table meanwhile.
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
  // See the top of the file. kHashMul is 2^32 / phi, odd.
  static constexpr int32_t kHashMul = static_cast<int32_t>(0x9e3779b9u);
  static uint32_t Hash(uint64_t address) {
    return static_cast<uint32_t>(address) * static_cast<uint32_t>(kHashMul);
  }
  uint64_t Home(uint64_t address) const { return Hash(address) >> shift_; }

  using Cell = std::atomic<uint8_t>;
  static constexpr uint8_t kTwo = 0x40;   // cell flag: two entries, XOR of fingerprints
  static constexpr uint8_t kMany = 0x80;  // cell flag: a count
  static_assert((1u << kGroupShift) + kMaxProbes - 1 + kMaxPinned <= 0x7f,
                "a cell's count fits its 7 bits");
  static constexpr uintptr_t kShiftBits = 31;  // low bits of read_: the shift
  // A filter's cells start `shift` bytes past a 64-byte boundary (and the
  // mapping has 64 bytes to spare for it).
  static constexpr size_t kCellOffsetSpan = 64;
  static size_t FilterBytes(uint64_t cells) { return cells * sizeof(Cell) + kCellOffsetSpan; }
  uint64_t coarse_cells() const { return (mask_ + 1) >> kGroupShift; }
  // The filters' mappings (page-aligned), from their cell 0.
  Cell* coarse_mapping() const { return coarse_ - (shift_ + kGroupShift); }
  Cell* fine_mapping() const { return fine_ - shift_; }
  // Until Init, free() reads cells 0 and 1 of this filter of shift 31.
  struct AllMaybe {
    Cell pad[31];
    Cell cells[2];
  };
  alignas(64) static AllMaybe kAllMaybe;
  alignas(64) static AllMaybe kNone;  // the same shape, both cells empty
  // The read filter's cell for `address`.
  uint8_t ReadCell(uint64_t address) const {
    const Cell* cells = read_.load(std::memory_order_acquire);
    uint32_t index = Hash(address);
#if defined(__x86_64__)
    // x86's 32-bit shift reads only its count's low 5 bits: the pointer is
    // the count. (Written in C++, GCC masks the copy it then needs.)
    asm("shrl %%cl, %0" : "+r"(index) : "c"(cells));
#else
    index >>= reinterpret_cast<uintptr_t>(cells) & kShiftBits;
#endif
    return cells[index].load(std::memory_order_relaxed);
  }
  // 1..63: bits 24-29 of a 64-bit multiplicative hash, which come from the
  // address's low 30 bits times the constant's low half, not the index's
  // multiplier. (Its top bits would not do: they hold the address's low 32
  // bits times 0x9e3779b9, the index itself, and twice as many pointers
  // that share a cell with a sample then passed the fingerprint.)
  static uint8_t Fingerprint(uint64_t address) {
    uint8_t fp = static_cast<uint8_t>((address * 0x9e3779b97f4a7c15ull) >> 24) & 0x3f;
    return fp ? fp : 1;
  }
  static bool CellMayHold(uint8_t cell, uint8_t fingerprint) {
    return cell == fingerprint || cell >= kTwo;
  }
  // Thresholds of ChooseFilter, in entries per coarse cell: the fine filter
  // above 1/kFineAbove (128 entries by default, ~64 MiB of heap at the
  // default rate), the coarse one again below 1/kCoarseBelow.
  static constexpr uint64_t kFineAbove = 64, kCoarseBelow = 128;
  static void CellAdd(Cell& cell, uint8_t fingerprint);
  // `fingerprint` is the leaving entry's, one of the cell's.
  static void CellRemove(Cell& cell, uint8_t fingerprint);
  Slot* slots_ = nullptr;
  Cell* coarse_ = nullptr;  // (mask_ + 1) >> kGroupShift cells, shift shift_ + kGroupShift
  Cell* fine_ = nullptr;    // mask_ + 1 cells, shift shift_
  // The filter free() reads: its cell 0, whose address says its shift.
  std::atomic<const Cell*> read_{&kAllMaybe.cells[0]};
  uint64_t mask_ = 0;
  uint32_t shift_ = 31;  // 32 - log2(slots); 31 keeps Home() in [0,1] before Init
  std::atomic<uint32_t> pinned_{0};  // counts in the filters that are not entries
  // The pinned addresses, which go into the fine filter only when free()
  // is first pointed at it (ReadFilter): a process that never samples
  // enough to switch, most of them, does not touch its pages (a fault a
  // pin, ~4 of an exec's page faults under the shim).
  uint64_t pinned_addresses_[kMaxPinned] = {};
  // Whether the pins are in the fine filter; kPinsBusy while a thread adds
  // to the pins (Pin) or moves them there (ReadFilter), which is the lock
  // of both.
  static constexpr uint8_t kPinsNotInFine = 0, kPinsBusy = 1, kPinsInFine = 2;
  std::atomic<uint8_t> fine_pinned_{kPinsNotInFine};
  // No count of entries is kept beside the filters: a counter every Insert
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
  // (The coarse filter is read, whichever filter free() reads.)
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
    if (coarse_[g].load(std::memory_order_acquire) == 0) continue;
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
