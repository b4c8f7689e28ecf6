#include "stack_depot.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <heapwatch/wire.h>

namespace heapwatch::preload {
namespace {

TEST(StackDepotTest, HashIsNonZeroAndOrderSensitive) {
  uint64_t a[] = {1, 2, 3}, b[] = {3, 2, 1};
  EXPECT_NE(HashStack(a, 3), 0u);
  EXPECT_NE(HashStack(a, 3), HashStack(b, 3));
  EXPECT_NE(HashStack(a, 3), HashStack(a, 2));
  EXPECT_EQ(HashStack(a, 3), HashStack(a, 3));
}

TEST(StackDepotTest, StackIdsDifferAcrossUnloadEpochsAndCarryTheEpochOnTop) {
  uint64_t a[] = {0x7f0000001000, 0x401000};
  constexpr uint32_t kShift = 64 - wire::kStackEpochBits;
  EXPECT_EQ(StackId(a, 2, 0), StackId(a, 2, 0));
  EXPECT_NE(StackId(a, 2, 0), StackId(a, 2, 2));
  EXPECT_NE(StackId(a, 2, 0), StackId(a, 1, 0));
  EXPECT_EQ(StackId(a, 2, 0) >> kShift, 0u);
  EXPECT_EQ(StackId(a, 2, 5) >> kShift, 5u);
  // Only the low bits fit on top; the hash below tells wrapped epochs apart.
  const uint64_t span = uint64_t{1} << wire::kStackEpochBits;
  EXPECT_EQ(StackId(a, 2, span + 5) >> kShift, 5u);
  EXPECT_NE(StackId(a, 2, span + 5), StackId(a, 2, 5));
  for (uint64_t epoch = 0; epoch < 3 * span; epoch += span) {
    EXPECT_NE(StackId(a, 2, epoch) & ((uint64_t{1} << kShift) - 1), 0u);  // never 0, even at epoch 0
  }
}

TEST(StackDepotTest, InternAndFind) {
  StackDepot d;
  ASSERT_TRUE(d.Init(64, 1000));
  uint64_t pcs[] = {0x401000, 0x402000, 0x403000};
  uint64_t id = HashStack(pcs, 3);
  const uint64_t* got = nullptr;
  uint32_t depth = 0;
  EXPECT_EQ(d.Find(id, &got, &depth), StackDepot::FindResult::kMissing);
  ASSERT_TRUE(d.Intern(id, pcs, 3));
  ASSERT_TRUE(d.Intern(id, pcs, 3));  // idempotent
  EXPECT_EQ(d.stacks(), 1u);
  ASSERT_EQ(d.Find(id, &got, &depth), StackDepot::FindResult::kFound);
  ASSERT_EQ(depth, 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], pcs[i]);
}

TEST(StackDepotTest, FullDepotRefuses) {
  StackDepot d;
  ASSERT_TRUE(d.Init(64, 10));
  uint64_t pcs[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_TRUE(d.Intern(100, pcs, 8));
  EXPECT_FALSE(d.Intern(200, pcs, 8)) << "no room for the pcs";
  EXPECT_FALSE(d.Intern(200, pcs, 8));
  const uint64_t* got;
  uint32_t depth;
  EXPECT_EQ(d.Find(200, &got, &depth), StackDepot::FindResult::kMissing);
  EXPECT_EQ(d.Find(100, &got, &depth), StackDepot::FindResult::kFound);
}

TEST(StackDepotTest, ConcurrentInterning) {
  StackDepot d;
  ASSERT_TRUE(d.Init(1 << 14, 1 << 20));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (uint64_t i = 1; i <= 2000; ++i) {
        uint64_t pcs[4] = {i, i * 2, i * 3, i * 4};
        ASSERT_TRUE(d.Intern(HashStack(pcs, 4), pcs, 4));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(d.stacks(), 2000u);
  for (uint64_t i = 1; i <= 2000; ++i) {
    uint64_t pcs[4] = {i, i * 2, i * 3, i * 4};
    const uint64_t* got;
    uint32_t depth;
    ASSERT_EQ(d.Find(HashStack(pcs, 4), &got, &depth), StackDepot::FindResult::kFound);
    ASSERT_EQ(depth, 4u);
    EXPECT_EQ(got[3], i * 4);
  }
}

TEST(StackDepotTest, ThePcsSpaceIsUsableOnlyAsItFills) {
  // 16 MiB reserved (the default), none of it usable until stacks arrive,
  // then kCommitBytes at a time: mlockall and strict overcommit see only
  // what is used.
  StackDepot d;
  constexpr uint64_t kCapacity = uint64_t{1} << 21;  // pcs
  ASSERT_TRUE(d.Init(1 << 16, kCapacity));
  EXPECT_EQ(d.committed_bytes(), 0u);
  uint64_t pcs[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE(d.Intern(HashStack(pcs, 8), pcs, 8));
  EXPECT_EQ(d.committed_bytes(), StackDepot::kCommitBytes);
  // Stacks that straddle a commit boundary, from four threads at once.
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&d, t] {
      for (uint64_t i = 0; i < 5000; ++i) {
        uint64_t frames[13];
        for (uint64_t k = 0; k < 13; ++k) frames[k] = (t << 40) | (i << 8) | k;
        ASSERT_TRUE(d.Intern(HashStack(frames, 13), frames, 13));
      }
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t used_bytes = (8 + 4 * 5000 * 13) * sizeof(uint64_t);
  EXPECT_GE(d.committed_bytes(), used_bytes);
  EXPECT_LT(d.committed_bytes(), used_bytes + StackDepot::kCommitBytes);
  for (uint64_t t = 0; t < 4; ++t) {
    for (uint64_t i = 0; i < 5000; ++i) {
      uint64_t frames[13];
      for (uint64_t k = 0; k < 13; ++k) frames[k] = (t << 40) | (i << 8) | k;
      const uint64_t* got;
      uint32_t depth;
      ASSERT_EQ(d.Find(HashStack(frames, 13), &got, &depth), StackDepot::FindResult::kFound);
      ASSERT_EQ(depth, 13u);
      for (uint64_t k = 0; k < 13; ++k) ASSERT_EQ(got[k], frames[k]);
    }
  }
}

}  // namespace
}  // namespace heapwatch::preload
