#include "live_table.h"

#include "raw_memory.h"

static_assert(heapwatch::preload::LiveTable::kHugeTableBytes == heapwatch::preload::kHugePageBytes);

namespace heapwatch::preload {

alignas(64) LiveTable::AllMaybe LiveTable::kAllMaybe = {{}, {kMany | 1, kMany | 1}};
alignas(64) LiveTable::AllMaybe LiveTable::kNone = {{}, {0, 0}};

void LiveTable::CellAdd(Cell& cell, uint8_t fingerprint) {
  // Most cells are empty: the first try guesses so, with no load before it.
  // A load first would take two page faults on an untouched page of a
  // filter (the zero page, then its copy) where the exchange takes one.
  uint8_t v = 0;
  uint8_t next;
  do {
    next = v == 0      ? fingerprint
           : v < kTwo  ? static_cast<uint8_t>(kTwo | (v ^ fingerprint))
           : v < kMany ? static_cast<uint8_t>(kMany | 3)
                       : static_cast<uint8_t>(v + 1);
  } while (!cell.compare_exchange_weak(v, next, std::memory_order_relaxed));
}

void LiveTable::CellRemove(Cell& cell, uint8_t fingerprint) {
  uint8_t v = cell.load(std::memory_order_relaxed);
  uint8_t next;
  do {
    // One: its fingerprint, alone. Two: the other's is the XOR's remainder.
    next = v < kTwo             ? 0
           : v < kMany          ? static_cast<uint8_t>((v ^ fingerprint) & 0x3f)
           : v == (kMany | 1)   ? 0
                                : static_cast<uint8_t>(v - 1);
  } while (!cell.compare_exchange_weak(v, next, std::memory_order_relaxed));
}

bool LiveTable::Init(uint64_t slots, const uint64_t* pinned, size_t pinned_count) {
  // At most 2^28 slots: the coarse filter's shift (32 - log2 + 3) stays a
  // 32-bit shift's count.
  if (slots < 64 || slots > (uint64_t{1} << 28) || (slots & (slots - 1)) != 0 || slots_ ||
      pinned_count > kMaxPinned) {
    return false;
  }
  // Entries land at random slots, so a process that samples for a while
  // touches every page of its table. The default table (64 Ki slots) is one
  // huge page: one fault instead of 512, which cost ~6 ms of a process's CPU
  // (~12 us a fault, on the development VM). Bigger tables serve heavy
  // sampling (R < 64 KiB), where a short process touches few of their pages.
  // The filters' pages are touched as entries land, or at once by
  // PrefaultFilters (at most 72 KiB by default).
  const size_t table_bytes = slots * sizeof(Slot);
  const size_t coarse_bytes = FilterBytes(slots >> kGroupShift);
  const size_t fine_bytes = FilterBytes(slots);
  auto* table = static_cast<Slot*>(table_bytes == kHugeTableBytes ? MapZeroedHuge(table_bytes)
                                                                 : MapZeroed(table_bytes));
  auto* coarse = static_cast<Cell*>(MapZeroed(coarse_bytes));
  auto* fine = static_cast<Cell*>(MapZeroed(fine_bytes));
  if (!table || !coarse || !fine) {
    Unmap(table, table_bytes);
    Unmap(coarse, coarse_bytes);
    Unmap(fine, fine_bytes);
    return false;
  }
  uint32_t log2 = 0;
  while ((1ull << log2) < slots) ++log2;
  mask_ = slots - 1;
  shift_ = 32 - log2;
  slots_ = table;
  coarse_ = coarse + shift_ + kGroupShift;  // see coarse_mapping()
  fine_ = fine + shift_;
  for (size_t i = 0; i < pinned_count; ++i) {
    CellAdd(coarse_[Home(pinned[i]) >> kGroupShift], Fingerprint(pinned[i]));
    pinned_addresses_[i] = pinned[i];
  }
  pinned_.store(static_cast<uint32_t>(pinned_count), std::memory_order_relaxed);
  ReadFilter(/*fine=*/false);
  return true;
}

bool LiveTable::Pin(uint64_t address) {
  if (!slots_) return false;
  uint8_t state = fine_pinned_.load(std::memory_order_acquire);
  while (state == kPinsBusy ||
         !fine_pinned_.compare_exchange_weak(state, kPinsBusy, std::memory_order_acq_rel)) {
    state = fine_pinned_.load(std::memory_order_acquire);
  }
  const uint32_t n = pinned_.load(std::memory_order_relaxed);
  const bool room = n < kMaxPinned;
  if (room) {
    pinned_addresses_[n] = address;
    CellAdd(coarse_[Home(address) >> kGroupShift], Fingerprint(address));
    if (state == kPinsInFine) CellAdd(fine_[Home(address)], Fingerprint(address));
    pinned_.store(n + 1, std::memory_order_release);
  }
  fine_pinned_.store(state, std::memory_order_release);
  return room;
}

void LiveTable::ReadFilter(bool fine) {
  if (!slots_) return;
  // Another thread's pins first (the sender is the only caller but tests).
  for (uint8_t state = fine_pinned_.load(std::memory_order_acquire); fine && state != kPinsInFine;
       state = fine_pinned_.load(std::memory_order_acquire)) {
    if (state == kPinsNotInFine &&
        fine_pinned_.compare_exchange_strong(state, kPinsBusy, std::memory_order_acq_rel)) {
      const uint32_t n = pinned_.load(std::memory_order_relaxed);
      for (uint32_t i = 0; i < n; ++i) {
        CellAdd(fine_[Home(pinned_addresses_[i])], Fingerprint(pinned_addresses_[i]));
      }
      fine_pinned_.store(kPinsInFine, std::memory_order_release);
    }
  }
  read_.store(fine ? fine_ : coarse_, std::memory_order_release);
}

void LiveTable::PrefaultFilters(size_t max_bytes) {
  if (!slots_) return;
  const size_t coarse_bytes = FilterBytes(coarse_cells());
  const size_t fine_bytes = FilterBytes(mask_ + 1);
  if (coarse_bytes <= max_bytes) PrefaultPages(coarse_mapping(), coarse_bytes);
  if (fine_bytes <= max_bytes) PrefaultPages(fine_mapping(), fine_bytes);
}

bool LiveTable::reads_fine_filter() const {
  return fine_ && read_.load(std::memory_order_relaxed) == fine_;
}

void LiveTable::ChooseFilter() {
  if (!slots_) return;
  // With N entries about N/C of frees meet a non-empty coarse cell (C
  // cells) and take free()'s slow path; those whose cell holds two or more
  // entries (no single fingerprint) also probe the table, a DRAM miss each. The
  // fine filter (8C cells) makes both eight times rarer; its cost is an L1
  // miss on most frees, which the predicted branch mostly hides. Measured
  // (bench/shim/run_heap_sizes.sh), the fine filter is level with the
  // coarse one at a few dozen entries and ahead from ~100. Hysteresis keeps
  // a heap near the border from switching back and forth.
  const uint64_t n = Size();
  const bool fine = reads_fine_filter();
  if (!fine && n > coarse_cells() / kFineAbove) ReadFilter(true);
  if (fine && n < coarse_cells() / kCoarseBelow) ReadFilter(false);
}

uint64_t LiveTable::Size() const {
  if (!slots_) return 0;
  // Eight cells a load, from the mapping's start (page-aligned; the bytes
  // before cell 0 and after the last stay 0), summed in place. A cell of
  // 0x01..0x3f counts one entry, 0x40 | x two, 0x80 | n n. Byte by byte
  // this was ~11 instructions a cell, 90k for the default filter (then once
  // a second; now every sender round): visible in callgrind counts of
  // processes that mostly wait.
  const auto* words = reinterpret_cast<const uint64_t*>(coarse_mapping());
  constexpr uint64_t kHigh = 0x8080808080808080ull, kLow7 = 0x7f7f7f7f7f7f7f7full;
  constexpr uint64_t kBit6 = 0x4040404040404040ull, kLow6 = 0x3f3f3f3f3f3f3f3full;
  constexpr uint64_t kLowBytes = 0x00ff00ff00ff00ffull, kOnes = 0x0101010101010101ull;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < FilterBytes(coarse_cells()) / 8; ++i) {
    uint64_t w = __atomic_load_n(&words[i], __ATOMIC_RELAXED);
    if (w == 0) continue;  // most words of a sparse filter
    const uint64_t many = w & kHigh, not_many = ~(many >> 1) & kBit6;
    // One entry: bits 7 and 6 clear, some low bit set (bit 6 of the sum).
    uint64_t singles = ((w & kLow6) + kLow6) & not_many & ~w;
    // Two entries: bit 6 set, bit 7 clear.
    uint64_t pairs_of = w & not_many;
    sum += (((singles >> 6) + ((pairs_of >> 6) << 1)) * kOnes) >> 56;
    // A count: the low 7 bits, in 16-bit lanes, then summed.
    uint64_t counts = w & kLow7 & ((many >> 7) * 0x7f);
    uint64_t lanes = (counts & kLowBytes) + ((counts >> 8) & kLowBytes);
    sum += (lanes * 0x0001000100010001ull) >> 48;
  }
  const uint32_t pinned = pinned_.load(std::memory_order_acquire);
  return sum > pinned ? sum - pinned : 0;
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
        // never takes a cell below zero, and free() finds the cells set.
        const uint8_t fp = Fingerprint(e.address);
        CellAdd(coarse_[home >> kGroupShift], fp);
        CellAdd(fine_[home], fp);
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
  if (!slots_ || address <= kBusy) return false;
  // Most pointers that reach here share a cell with a sample; the
  // fingerprint turns them away without touching the table.
  const uint8_t fp = Fingerprint(address);
  if (!CellMayHold(ReadCell(address), fp)) return false;
  const uint64_t home = Home(address);
  Cell& coarse = coarse_[home >> kGroupShift];
  Cell& fine = fine_[home];
  __builtin_prefetch(&coarse, 1);  // written below; their misses overlap the probe's
  __builtin_prefetch(&fine, 1);
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
    CellRemove(coarse, fp);
    CellRemove(fine, fp);
    if (out) *out = e;
    return true;
  }
  return false;
}

}  // namespace heapwatch::preload
