#include "sender_pacing.h"

#include <vector>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

constexpr uint64_t kRing = 8192;
constexpr uint64_t kMs = 1000000;

TEST(SenderSleep, QuietProcessBacksOffToTheMaximum) {
  uint64_t ms = 10;
  std::vector<uint64_t> seen;
  for (int i = 0; i < 6; ++i) seen.push_back(ms = SenderSleepMs(ms, 0, ms * kMs, kRing));
  EXPECT_EQ(seen, (std::vector<uint64_t>{20, 40, 80, 100, 100, 100}));
}

TEST(SenderSleep, SleepsUntilAQuarterOfTheRingAtTheObservedRate) {
  // 1000 events in 40 ms: a quarter of the ring (2048) takes ~82 ms.
  EXPECT_EQ(SenderSleepMs(100, 1000, 40 * kMs, kRing), 81u);
  // 80,000 events/s (shim_alloc_workload): 800 in 10 ms, 2048 in ~25 ms.
  EXPECT_EQ(SenderSleepMs(100, 800, 10 * kMs, kRing), 25u);
  // Faster than a quarter of the ring per minimum sleep: the minimum.
  EXPECT_EQ(SenderSleepMs(100, 3000, 10 * kMs, kRing), 10u);
}

TEST(SenderSleep, GrowsAtMostTwofoldARoundAndShrinksAtOnce) {
  // A few events after a short round say little about the rate.
  EXPECT_EQ(SenderSleepMs(10, 1, 1 * kMs, kRing), 20u);
  EXPECT_EQ(SenderSleepMs(0, 1, 1 * kMs, kRing), 10u);
  EXPECT_EQ(SenderSleepMs(100, 2000, 10 * kMs, kRing), 10u);
}

TEST(SenderSleep, HalfARingGoesRoundAgainAtOnce) {
  EXPECT_EQ(SenderSleepMs(100, kRing / 2, 100 * kMs, kRing), 0u);
  EXPECT_EQ(SenderSleepMs(100, kRing / 2 - 1, 100 * kMs, kRing), 50u);
}

TEST(SenderSleep, LongGapsAndBigRingsDoNotOverflow) {
  // The first round (elapsed since boot) and the largest ring (2^22 slots).
  EXPECT_EQ(SenderSleepMs(10, 1, ~0ull, 1ull << 22), 20u);
  EXPECT_EQ(SenderSleepMs(100, 1, ~0ull, 1ull << 22), 100u);
}

}  // namespace
}  // namespace heapwatch::preload
