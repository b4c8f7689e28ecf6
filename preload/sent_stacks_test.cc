#include "sent_stacks.h"

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

TEST(SentStacksTest, InitWantsAPowerOfTwoOfAtLeast64Slots) {
  SentStacks a, b, c;
  EXPECT_FALSE(a.Init(63));
  EXPECT_FALSE(b.Init(96));
  EXPECT_TRUE(c.Init(64));
  EXPECT_FALSE(c.Init(64));  // once
}

TEST(SentStacksTest, HoldsWhatWasAddedAndNothingElse) {
  SentStacks s;
  ASSERT_TRUE(s.Init(64));
  EXPECT_FALSE(s.Contains(7));
  s.Add(7);
  s.Add(7 + 64);  // same home slot: probes on
  s.Add(7 + 128);
  EXPECT_TRUE(s.Contains(7));
  EXPECT_TRUE(s.Contains(7 + 64));
  EXPECT_TRUE(s.Contains(7 + 128));
  EXPECT_FALSE(s.Contains(7 + 192));
  EXPECT_FALSE(s.Contains(8));
  s.Add(7);  // already there
  EXPECT_EQ(s.size(), 3u);
}

TEST(SentStacksTest, ClearForgetsAndTheSetIsUsableAfterwards) {
  SentStacks s;
  ASSERT_TRUE(s.Init(1024));
  for (uint64_t id = 1; id <= 100; ++id) s.Add(id * 0x9e3779b97f4a7c15ull);
  EXPECT_EQ(s.size(), 100u);
  s.Clear();
  EXPECT_EQ(s.size(), 0u);
  for (uint64_t id = 1; id <= 100; ++id) EXPECT_FALSE(s.Contains(id * 0x9e3779b97f4a7c15ull));
  s.Add(42);
  EXPECT_TRUE(s.Contains(42));
}

TEST(SentStacksTest, NeverFillsUp) {
  // Without the forgetting at 3/4, the 65th id would probe forever.
  SentStacks s;
  ASSERT_TRUE(s.Init(64));
  for (uint64_t id = 1; id <= 1000; ++id) {
    s.Add(id);
    ASSERT_TRUE(s.Contains(id)) << id;
    ASSERT_LE(s.size(), 48u);
  }
  // It forgot at ids 49, 97, ..., 961 (48 more each time), so it holds
  // 961..1000.
  EXPECT_EQ(s.size(), 40u);
  EXPECT_TRUE(s.Contains(961));
  EXPECT_FALSE(s.Contains(960));
}

TEST(SentStacksTest, AnUninitialisedSetHoldsNothing) {
  SentStacks s;
  s.Add(5);
  EXPECT_FALSE(s.Contains(5));
  EXPECT_EQ(s.size(), 0u);
}

}  // namespace
}  // namespace heapwatch::preload
