// The live table's pinned addresses: those Init counts (the bootstrap
// arena's blocks from before the table) and those Pin adds later (the
// sender thread's), their way into the fine filter, and a child copied
// while a thread held the pins' lock. The table itself: live_table_test.cc.
#include "live_table.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

TEST(LiveTableTest, PinnedAddressesStayMaybeAndOthersMostlyDoNot) {
  // Addresses like the bootstrap arena's: a few blocks close together.
  std::vector<uint64_t> pinned;
  for (uint64_t i = 0; i < LiveTable::kMaxPinned; ++i) pinned.push_back(0x7f0000001000 + 48 * i);
  constexpr double kPins = LiveTable::kMaxPinned;
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 16, pinned.data(), pinned.size()));
  for (uint64_t a : pinned) EXPECT_TRUE(t.MaybeHolds(a));
  // Other pointers: at most the pins' cells say maybe, i.e. kMaxPinned of
  // 8192 coarse cells; allow twice that. Of those, the fingerprint turns away all
  // but ~1/63.
  auto maybe_rate = [&](uint64_t* holds) {
    uint64_t maybe = 0, total = 0;
    *holds = 0;
    for (uint64_t a = 0x555500000000; a < 0x555500000000 + (16u << 20); a += 16, ++total) {
      maybe += t.MaybeContains(a);
      *holds += t.MaybeHolds(a);
    }
    return static_cast<double>(maybe) / static_cast<double>(total);
  };
  uint64_t holds;
  double rate = maybe_rate(&holds);
  EXPECT_GT(rate, 0.5 * kPins / 8192);
  EXPECT_LT(rate, 2.0 * kPins / 8192);
  EXPECT_LT(static_cast<double>(holds), rate * (16u << 20) / 16 / 32);
  // Entries come and go on the pins' cells; the pins stay, with their
  // fingerprints.
  for (uint64_t a : pinned) {
    ASSERT_TRUE(t.Insert({a, 8, 1, 1}));
    ASSERT_TRUE(t.Remove(a, nullptr));
    EXPECT_TRUE(t.MaybeHolds(a));
  }
  EXPECT_EQ(t.Size(), 0u);
  int n = 0;
  t.ForEach([&](const LiveTable::Entry&) { ++n; });
  EXPECT_EQ(n, 0) << "pins are not entries";
  EXPECT_LT(maybe_rate(&holds), 2.0 * kPins / 8192);
  EXPECT_LT(static_cast<double>(holds), rate * (16u << 20) / 16 / 32);
  EXPECT_EQ(t.MaybeContains(0), false) << "free(NULL) must not take the slow path";
}

// The pins go into the fine filter when free() is first pointed at it, not
// at Init (a process that never switches leaves its pages untouched), and
// entries on the pins' own addresses before and across the switch change
// nothing for them.
TEST(LiveTableTest, PinsReachTheFineFilterWhenFreeFirstReadsIt) {
  std::vector<uint64_t> pinned;
  for (uint64_t i = 0; i < LiveTable::kMaxPinned; ++i) pinned.push_back(0x7f0000001000 + 48 * i);
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 16, pinned.data(), pinned.size()));
  for (size_t i = 0; i < 16; ++i) {
    ASSERT_TRUE(t.Insert({pinned[i], 8, 1, 1}));
    ASSERT_TRUE(t.Remove(pinned[i], nullptr));
  }
  ASSERT_TRUE(t.Insert({pinned[16], 8, 1, 1}));  // live across the switch
  t.ReadFilter(true);
  ASSERT_TRUE(t.reads_fine_filter());
  for (uint64_t a : pinned) EXPECT_TRUE(t.MaybeHolds(a)) << std::hex << a;
  LiveTable::Entry e{};
  ASSERT_TRUE(t.Remove(pinned[16], &e));
  EXPECT_EQ(e.size, 8u);
  EXPECT_TRUE(t.MaybeHolds(pinned[16]));
  // Back and forth: the pins stay, and other pointers mostly read absent.
  t.ReadFilter(false);
  t.ReadFilter(true);
  for (uint64_t a : pinned) EXPECT_TRUE(t.MaybeHolds(a)) << std::hex << a;
  uint64_t maybe = 0, total = 0;
  for (uint64_t a = 0x555500000000; a < 0x555500000000 + (16u << 20); a += 16, ++total) {
    maybe += t.MaybeContains(a);
  }
  EXPECT_LT(static_cast<double>(maybe) / static_cast<double>(total), 2.0 * LiveTable::kMaxPinned / 65536);
  EXPECT_EQ(t.Size(), 0u);
}

// The sender's blocks are pinned one at a time as it allocates them, before
// or after free() first reads the fine filter: either way they read maybe
// in both filters from then on, and count as no entry.
TEST(LiveTableTest, PinsAfterInitReadAsMaybeInBothFiltersAndCountAsNoEntry) {
  LiveTable before_init;
  EXPECT_FALSE(before_init.Pin(0x7f0000001000)) << "no filter to pin in";
  std::vector<uint64_t> at_init, later;
  for (uint64_t i = 0; i < 8; ++i) at_init.push_back(0x7f0000001000 + 48 * i);
  for (uint64_t i = 8; i < LiveTable::kMaxPinned; ++i) later.push_back(0x7f0000001000 + 48 * i);
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 16, at_init.data(), at_init.size()));
  ASSERT_TRUE(t.Insert({0x555500001000, 8, 1, 1}));
  const size_t half = later.size() / 2;
  for (size_t i = 0; i < half; ++i) ASSERT_TRUE(t.Pin(later[i]));
  EXPECT_EQ(t.Size(), 1u);
  t.ReadFilter(true);
  for (size_t i = half; i < later.size(); ++i) ASSERT_TRUE(t.Pin(later[i]));
  EXPECT_FALSE(t.Pin(0x7f0000100000)) << "kMaxPinned pinned already";
  EXPECT_EQ(t.Size(), 1u);
  for (bool fine : {true, false, true}) {
    t.ReadFilter(fine);
    ASSERT_EQ(t.reads_fine_filter(), fine);
    for (uint64_t a : at_init) EXPECT_TRUE(t.MaybeHolds(a)) << std::hex << a << " fine " << fine;
    for (uint64_t a : later) EXPECT_TRUE(t.MaybeHolds(a)) << std::hex << a << " fine " << fine;
    EXPECT_FALSE(t.MaybeHolds(0x7f0000100000));
  }
  LiveTable::Entry e{};
  ASSERT_TRUE(t.Remove(0x555500001000, &e));
  EXPECT_EQ(t.Size(), 0u);
  for (uint64_t a : later) EXPECT_FALSE(t.Remove(a, nullptr)) << "a pin is not an entry";
}

// Pins race free()'s first switch to the fine filter (the sender pins while
// another caller switches: tests only, the sender does both): none is lost.
TEST(LiveTableTest, PinsRacingTheSwitchToTheFineFilterAllLand) {
  for (int round = 0; round < 50; ++round) {
    LiveTable t;
    ASSERT_TRUE(t.Init(1 << 16));
    std::vector<uint64_t> pins;
    for (uint64_t i = 0; i < LiveTable::kMaxPinned; ++i) pins.push_back(0x7f0000001000 + 4096 * i);
    std::atomic<bool> go{false};
    std::thread pinner([&] {
      while (!go.load()) {
      }
      for (uint64_t a : pins) EXPECT_TRUE(t.Pin(a));
    });
    go.store(true);
    t.ReadFilter(true);
    pinner.join();
    for (bool fine : {true, false}) {
      t.ReadFilter(fine);
      for (uint64_t a : pins) ASSERT_TRUE(t.MaybeHolds(a)) << "round " << round << " fine " << fine;
    }
    EXPECT_EQ(t.Size(), 0u);
  }
}

// A child forked while another thread holds the pins' lock (here a thread
// that pins over and over, each call taking it) must still switch filters:
// without ForkChild some children wait on the lock for good.
TEST(LiveTableTest, AChildCopiedMidPinCanStillSwitchFilters) {
  LiveTable t;
  ASSERT_TRUE(t.Init(1 << 16));
  std::atomic<bool> stop{false};
  std::thread pinner([&] {
    while (!stop.load(std::memory_order_relaxed)) t.Pin(0x7f0000001000);  // full: false, lock taken
  });
  int stuck = 0;
  for (int i = 0; i < 200; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(2);  // a child that waits on the lock dies of SIGALRM
      t.ForkChild();
      t.ReadFilter(true);
      _exit(t.reads_fine_filter() ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++stuck;  // one is enough: each takes the alarm's 2 s
      break;
    }
  }
  stop.store(true);
  pinner.join();
  EXPECT_EQ(stuck, 0);
}

TEST(LiveTableTest, InitRejectsTooManyPinsAndASecondInit) {
  std::vector<uint64_t> pinned(LiveTable::kMaxPinned + 1, 0x1000);
  LiveTable t;
  EXPECT_FALSE(t.Init(1024, pinned.data(), pinned.size()));
  EXPECT_FALSE(t.initialized());
  ASSERT_TRUE(t.Init(1024, pinned.data(), LiveTable::kMaxPinned));
  EXPECT_FALSE(t.Init(1024)) << "a second Init would drop the live entries and pins";
  EXPECT_TRUE(t.MaybeContains(0x1000));
}

TEST(LiveTableTest, SizeCountsEntriesNotPinnedAddresses) {
  // The smallest table: its 8 filter counters are one word of Size()'s sum,
  // and nearly full they hold large counts.
  const uint64_t pinned[] = {0x7000, 0x9000, 0xb000};
  LiveTable t;
  ASSERT_TRUE(t.Init(64, pinned, 3));
  EXPECT_EQ(t.Size(), 0u);
  std::vector<uint64_t> live;
  for (uint64_t a = 0x10000; live.size() < 60; a += 16) {
    if (t.Insert({a, 1, 1, 1})) live.push_back(a);
  }
  EXPECT_EQ(t.Size(), 60u);
  for (size_t i = 0; i < live.size(); i += 2) ASSERT_TRUE(t.Remove(live[i], nullptr));
  EXPECT_EQ(t.Size(), 30u);
}

}  // namespace
}  // namespace heapwatch::preload
