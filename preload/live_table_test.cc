#include "live_table.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

// Home slot as LiveTable computes it, for building collisions.
uint64_t HomeOf(uint64_t address, uint64_t slots) {
  uint32_t log2 = 0;
  while ((1ull << log2) < slots) ++log2;
  return (static_cast<uint32_t>(address) * 0x9e3779b9u) >> (32 - log2);
}

// Fingerprint as LiveTable computes it (6 bits, never 0).
uint64_t FingerprintOf(uint64_t address) {
  uint64_t fp = ((address * 0x9e3779b97f4a7c15ull) >> 24) & 0x3f;
  return fp ? fp : 1;
}

TEST(LiveTableTest, InsertFindRemove) {
  LiveTable t;
  ASSERT_TRUE(t.Init(1024));
  EXPECT_FALSE(t.MaybeContains(0x1000));
  ASSERT_TRUE(t.Insert({0x1000, 10, 7, 99}));
  EXPECT_TRUE(t.MaybeContains(0x1000));
  EXPECT_EQ(t.Size(), 1u);
  LiveTable::Entry e{};
  EXPECT_FALSE(t.Remove(0x2000, &e));
  ASSERT_TRUE(t.Remove(0x1000, &e));
  EXPECT_EQ(e.address, 0x1000u);
  EXPECT_EQ(e.size, 10u);
  EXPECT_EQ(e.stack_id, 7u);
  EXPECT_EQ(e.time_ns, 99u);
  EXPECT_FALSE(t.Remove(0x1000, &e));  // double free: no second event
  EXPECT_EQ(t.Size(), 0u);
  EXPECT_FALSE(t.MaybeContains(0x1000));
}

TEST(LiveTableTest, UninitialisedTableIsEmptyAndSafe) {
  LiveTable t;
  // "Maybe" for every address: until the bootstrap arena's blocks are pinned,
  // free() must take its slow path, which checks the arena.
  for (uint64_t a = 16; a < 16 * 1000; a += 16) ASSERT_TRUE(t.MaybeContains(a));
  EXPECT_FALSE(t.Insert({0x1000, 1, 1, 1}));
  EXPECT_FALSE(t.Remove(0x1000, nullptr));
  int n = 0;
  t.ForEach([&](const LiveTable::Entry&) { ++n; });
  EXPECT_EQ(n, 0);
}

TEST(LiveTableTest, BeforeInitWithNothingToPinFreeChecksNothing) {
  // The shim's state before a process's first sample where the bootstrap
  // arena is empty: every free() takes its fast path; Init then works as
  // ever and the filter it reads is the table's.
  LiveTable t;
  t.ReadNothingUntilInit();
  for (uint64_t a = 16; a < 16 * 1000; a += 16) ASSERT_FALSE(t.MaybeContains(a));
  EXPECT_FALSE(t.MaybeHolds(0x1000));
  EXPECT_FALSE(t.Insert({0x1000, 1, 1, 1}));
  ASSERT_TRUE(t.Init(1024));
  ASSERT_TRUE(t.Insert({0x1000, 1, 1, 1}));
  EXPECT_TRUE(t.MaybeContains(0x1000));
  EXPECT_FALSE(t.MaybeContains(0x2000) && t.MaybeHolds(0x2000));
  t.ReadNothingUntilInit();  // no effect once initialised
  EXPECT_TRUE(t.MaybeContains(0x1000));
}

// A cell holds one entry's fingerprint, the XOR of two entries'
// fingerprints, or a count once three share it; every transition keeps each
// present entry visible, and one of two leaving gives the other's
// fingerprint back.
TEST(LiveTableTest, CellsShareFingerprintsThenCounts) {
  const uint64_t slots = 4096;
  LiveTable t;
  ASSERT_TRUE(t.Init(slots));
  // Five addresses with one home slot and five different fingerprints.
  std::vector<uint64_t> same_home;
  std::set<uint64_t> fingerprints;
  for (uint64_t a = 16; same_home.size() < 5; a += 16) {
    if (HomeOf(a, slots) == 200 && fingerprints.insert(FingerprintOf(a)).second) {
      same_home.push_back(a);
    }
  }
  const uint64_t a = same_home[0], b = same_home[1];
  auto holds_only = [&](std::set<uint64_t> present) {
    for (uint64_t x : same_home) {
      EXPECT_TRUE(t.MaybeContains(x));
      EXPECT_EQ(t.MaybeHolds(x), present.count(x) == 1) << std::hex << x;
    }
  };
  for (bool fine : {false, true}) {
    SCOPED_TRACE(fine ? "fine filter" : "coarse filter");
    t.ReadFilter(fine);
    ASSERT_TRUE(t.Insert({a, 1, 1, 1}));
    holds_only({a});  // its neighbours share the cell; the fingerprint tells them apart
    // Two: maybe for every address of the cell; one leaves, the other's
    // fingerprint is back.
    ASSERT_TRUE(t.Insert({b, 1, 1, 1}));
    for (uint64_t x : same_home) EXPECT_TRUE(t.MaybeHolds(x));
    ASSERT_TRUE(t.Remove(a, nullptr));
    holds_only({b});
    ASSERT_TRUE(t.Insert({a, 1, 1, 1}));
    ASSERT_TRUE(t.Remove(b, nullptr));
    holds_only({a});
    // Three and more: a count, maybe for every address, down to empty.
    for (size_t i = 1; i < same_home.size(); ++i) ASSERT_TRUE(t.Insert({same_home[i], 1, 1, 1}));
    EXPECT_EQ(t.Size(), same_home.size());
    for (size_t i = 0; i < same_home.size(); ++i) {
      for (size_t j = i; j < same_home.size(); ++j) EXPECT_TRUE(t.MaybeHolds(same_home[j]));
      ASSERT_TRUE(t.Remove(same_home[i], nullptr));
      EXPECT_FALSE(t.Remove(same_home[i], nullptr));
    }
    for (uint64_t x : same_home) EXPECT_FALSE(t.MaybeContains(x));
    EXPECT_EQ(t.Size(), 0u);
  }
}

TEST(LiveTableTest, FingerprintsTurnAwayMostPointersThatShareACell) {
  // The fingerprint must not follow from the cell: pointers of one 4 GiB
  // window (a heap's, say) that share a cell with a sample are told apart
  // from it by their fingerprint, all but ~1 in 63 of them. (A fingerprint
  // from the 64-bit hash's top bits, which hold the index hash itself, let
  // most of them through.)
  const uint64_t slots = 65536;
  LiveTable t;
  ASSERT_TRUE(t.Init(slots));
  const uint64_t base = 0x7f3a00000000ull;
  const uint64_t sample = base + 0x12345670;
  ASSERT_TRUE(t.Insert({sample, 1, 1, 1}));
  for (bool fine : {false, true}) {
    SCOPED_TRACE(fine ? "fine filter" : "coarse filter");
    t.ReadFilter(fine);
    const uint64_t cell_of_sample = HomeOf(sample, slots) >> (fine ? 0 : LiveTable::kGroupShift);
    uint64_t x = 88172645463325252ull, sharing = 0, passed = 0;
    while (sharing < 4000) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const uint64_t p = base + ((x >> 20) & 0xfffffff0ull);  // 16-byte aligned, in the window
      if (p == sample || HomeOf(p, slots) >> (fine ? 0 : LiveTable::kGroupShift) != cell_of_sample) continue;
      ++sharing;
      ASSERT_TRUE(t.MaybeContains(p));
      passed += t.MaybeHolds(p);
    }
    // Expected 4000 / 63 = 63.5 (sd ~7.9): 5 sd above is 103.
    EXPECT_LT(passed, 103u);
  }
}


// A long-running service: thousands of samples live for good (a 4 GiB heap
// at the default rate) while short-lived ones come and go, sharing their
// cells for a while. Fingerprints must survive that: the share of other
// pointers that get past the fine filter to the table stays near its value
// before the churn.
TEST(LiveTableTest, ChurnAroundLongLivedEntriesKeepsTheirFingerprints) {
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 16));
  uint64_t x = 0x2545f4914f6cdd1dull;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return ((x >> 8) << 4) | 0x10;
  };
  for (int i = 0; i < 8000;) i += t.Insert({next(), 1, 1, 1});
  t.ChooseFilter();
  ASSERT_TRUE(t.reads_fine_filter());
  auto holds_rate = [&] {
    uint64_t holds = 0, total = 0;
    for (uint64_t a = 0x7e0000000000; a < 0x7e0000000000 + (16u << 20); a += 16, ++total) {
      holds += t.MaybeHolds(a);
    }
    return static_cast<double>(holds) / static_cast<double>(total);
  };
  const double before = holds_rate();
  std::vector<uint64_t> live(64, 0);
  for (int i = 0; i < 2000000; ++i) {
    uint64_t& slot = live[x % live.size()];
    if (slot) {
      ASSERT_TRUE(t.Remove(slot, nullptr));
    }
    slot = next();
    ASSERT_TRUE(t.Insert({slot, 1, 1, 1}));
  }
  for (uint64_t a : live) ASSERT_TRUE(t.Remove(a, nullptr));
  const double after = holds_rate();
  EXPECT_LT(after, 2 * before) << "before the churn " << before << ", after " << after;
}

TEST(LiveTableTest, ChooseFilterFollowsTheNumberOfEntries) {
  const uint64_t slots = 1 << 16;  // 8192 coarse cells
  LiveTable t;
  ASSERT_TRUE(t.Init(slots));
  std::vector<uint64_t> live;
  uint64_t x = 1;
  auto add = [&](size_t n) {
    while (live.size() < n) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      uint64_t a = (x >> 20) << 4;
      if (a > 2 && t.Insert({a, 1, 1, 1})) live.push_back(a);
    }
  };
  auto false_positives = [&] {
    uint64_t maybe = 0;
    for (uint64_t a = 0x7f1200000000; a < 0x7f1200000000 + (1u << 24); a += 16) {
      maybe += t.MaybeContains(a);
    }
    return maybe;
  };
  add(100);
  t.ChooseFilter();
  EXPECT_FALSE(t.reads_fine_filter()) << "100 entries: the coarse filter";
  add(1000);
  const uint64_t coarse_fp = false_positives();
  t.ChooseFilter();
  EXPECT_TRUE(t.reads_fine_filter()) << "1000 entries: the fine filter";
  const uint64_t fine_fp = false_positives();
  EXPECT_LT(fine_fp * 4, coarse_fp) << "the fine filter is ~8x more selective";
  for (uint64_t a : live) ASSERT_TRUE(t.MaybeContains(a));
  // Hysteresis: between the thresholds the choice stays.
  while (live.size() > 80) {
    ASSERT_TRUE(t.Remove(live.back(), nullptr));
    live.pop_back();
  }
  t.ChooseFilter();
  EXPECT_TRUE(t.reads_fine_filter()) << "80 entries: between 64 and 128, no switch";
  while (live.size() > 40) {
    ASSERT_TRUE(t.Remove(live.back(), nullptr));
    live.pop_back();
  }
  t.ChooseFilter();
  EXPECT_FALSE(t.reads_fine_filter()) << "40 entries: the coarse filter again";
  for (uint64_t a : live) ASSERT_TRUE(t.Remove(a, nullptr));
}

TEST(LiveTableTest, LongChurnKeepsLookupsShortAndFindsEverything) {
  // A long-running process: ~100 live samples, a million come and go. Every
  // slot ends up a tombstone, yet entries stay next to their home slot and
  // lookups that miss stop there.
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 16));
  std::vector<uint64_t> live(100, 0);
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 1000000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t& slot = live[x % live.size()];
    if (slot) {
      ASSERT_TRUE(t.Remove(slot, nullptr)) << "iteration " << i;
    }
    slot = (x >> 8) << 4;
    if (slot <= 2) slot = 16;
    ASSERT_TRUE(t.Insert({slot, 1, 1, 1})) << "iteration " << i;
  }
  EXPECT_LT(t.max_probe(), 8u);
  for (uint64_t a : live) EXPECT_TRUE(t.Remove(a, nullptr));
  EXPECT_EQ(t.Size(), 0u);
}

TEST(LiveTableTest, ProbesAreBounded) {
  const uint64_t slots = 4096;
  LiveTable t;
  ASSERT_TRUE(t.Init(slots));
  std::vector<uint64_t> same_home;
  for (uint64_t a = 16; same_home.size() < LiveTable::kMaxProbes + 1; a += 16) {
    if (HomeOf(a, slots) == 100) same_home.push_back(a);
  }
  for (uint32_t i = 0; i < LiveTable::kMaxProbes; ++i) ASSERT_TRUE(t.Insert({same_home[i], 1, 1, 1}));
  EXPECT_FALSE(t.Insert({same_home.back(), 1, 1, 1})) << "65th collision must not probe further";
  EXPECT_FALSE(t.Remove(same_home.back(), nullptr));
  // Freeing one makes room again (tombstone reuse), and all stay findable.
  ASSERT_TRUE(t.Remove(same_home[3], nullptr));
  EXPECT_TRUE(t.Insert({same_home.back(), 1, 1, 1}));
  for (uint32_t i = 0; i <= LiveTable::kMaxProbes; ++i) {
    if (i != 3) {
      EXPECT_TRUE(t.Remove(same_home[i], nullptr)) << i;
    }
  }
  EXPECT_EQ(t.Size(), 0u);
}

TEST(LiveTableTest, ChurnNeverFillsTheTable) {
  // Tombstones are reused: a million insert/remove cycles over a small table
  // with a bounded live set never report full.
  LiveTable t;
  ASSERT_TRUE(t.Init(1024));
  std::vector<uint64_t> live;
  uint64_t x = 1;
  for (int i = 0; i < 1000000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t a = (x >> 16) << 4 | 0x1000;
    if (live.size() < 200) {
      ASSERT_TRUE(t.Insert({a, 1, 1, 1})) << i;
      live.push_back(a);
    } else {
      size_t k = (x >> 40) % live.size();
      ASSERT_TRUE(t.Remove(live[k], nullptr)) << i;
      live[k] = live.back();
      live.pop_back();
    }
  }
  EXPECT_EQ(t.Size(), live.size());
}

TEST(LiveTableTest, ForEachSeesExactlyTheLiveEntries) {
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 12));
  std::set<uint64_t> want;
  for (uint64_t i = 1; i <= 1000; ++i) {
    ASSERT_TRUE(t.Insert({i * 48, i, i + 1, i + 2}));
    want.insert(i * 48);
  }
  for (uint64_t i = 1; i <= 1000; i += 3) {
    ASSERT_TRUE(t.Remove(i * 48, nullptr));
    want.erase(i * 48);
  }
  std::set<uint64_t> got;
  t.ForEach([&](const LiveTable::Entry& e) {
    EXPECT_EQ(e.size * 48, e.address);
    EXPECT_EQ(e.stack_id, e.size + 1);
    got.insert(e.address);
  });
  EXPECT_EQ(got, want);
}

// ForEach reads only the probe windows of occupied filter groups: entries
// displaced far from home, windows that overlap, and windows that wrap past
// the last slot must each still be visited exactly once.
TEST(LiveTableTest, ForEachVisitsEachEntryOnceInASparseTable) {
  constexpr uint64_t kSlots = 1 << 16;
  LiveTable t;
  ASSERT_TRUE(t.Init(kSlots));
  std::vector<uint64_t> last_slot, first_slot, middle;
  for (uint64_t a = 0x10000; last_slot.size() < 30 || first_slot.size() < 30 || middle.size() < 3;
       a += 16) {
    uint64_t home = HomeOf(a, kSlots);
    if (home == kSlots - 1 && last_slot.size() < 30) last_slot.push_back(a);
    if (home == 0 && first_slot.size() < 30) first_slot.push_back(a);
    if (home == kSlots / 2 && middle.size() < 3) middle.push_back(a);
  }
  std::multiset<uint64_t> want;
  // 30 entries homed at the last slot spill over slots 0..28; 30 homed at
  // slot 0 then land on slots 29..58, beyond slot 0's group.
  for (const auto* v : {&last_slot, &first_slot, &middle}) {
    for (uint64_t a : *v) {
      ASSERT_TRUE(t.Insert({a, 1, 2, 3}));
      want.insert(a);
    }
  }
  std::multiset<uint64_t> got;
  t.ForEach([&](const LiveTable::Entry& e) { got.insert(e.address); });
  EXPECT_EQ(got, want);

  // Only the wrapping entries left: group 0 is empty now, its slots are not.
  for (uint64_t a : first_slot) ASSERT_TRUE(t.Remove(a, nullptr));
  for (uint64_t a : middle) ASSERT_TRUE(t.Remove(a, nullptr));
  got.clear();
  t.ForEach([&](const LiveTable::Entry& e) { got.insert(e.address); });
  EXPECT_EQ(got, std::multiset<uint64_t>(last_slot.begin(), last_slot.end()));
}

TEST(LiveTableTest, ConcurrentInsertRemoveAndScan) {
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 14));
  constexpr int kThreads = 4, kRounds = 200000, kLivePerThread = 500;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0};
  std::thread scanner([&] {
    for (bool fine = false; !stop.load(); fine = !fine) {
      t.ReadFilter(fine);  // free() may read either filter at any moment
      t.ForEach([&](const LiveTable::Entry& e) {
        // Each entry's fields were written together: size encodes the address.
        if (e.size != (e.address >> 4) || e.stack_id != e.address + 1) bad.fetch_add(1);
      });
    }
  });
  std::vector<std::thread> workers;
  std::atomic<uint64_t> failures{0};
  for (int w = 0; w < kThreads; ++w) {
    workers.emplace_back([&, w] {
      std::vector<uint64_t> live;
      uint64_t base = (uint64_t(w) + 1) << 40;
      for (int i = 0; i < kRounds; ++i) {
        uint64_t a = base + (uint64_t(i) << 4);
        if (!t.Insert({a, a >> 4, a + 1, 0})) failures.fetch_add(1);
        live.push_back(a);
        if (live.size() > kLivePerThread) {
          if (!t.MaybeHolds(live.front())) failures.fetch_add(1);
          if (!t.Remove(live.front(), nullptr)) failures.fetch_add(1);
          live.erase(live.begin());
        }
      }
      for (uint64_t a : live) {
        if (!t.Remove(a, nullptr)) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : workers) th.join();
  stop = true;
  scanner.join();
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(t.Size(), 0u);
  int left = 0;
  t.ForEach([&](const LiveTable::Entry&) { ++left; });
  EXPECT_EQ(left, 0);
}

}  // namespace
}  // namespace heapwatch::preload
