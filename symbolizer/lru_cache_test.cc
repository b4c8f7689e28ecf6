#include "symbolizer/lru_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace heapwatch::symbolizer {
namespace {

TEST(LruCacheTest, EvictsLeastRecentlyUsedByCount) {
  LruCache<int, std::string> cache(2, 0);
  cache.Put(1, "one", 1);
  cache.Put(2, "two", 1);
  ASSERT_NE(cache.Find(1), nullptr);  // 1 is now the most recent
  cache.Put(3, "three", 1);
  EXPECT_EQ(cache.Find(2), nullptr);
  ASSERT_NE(cache.Find(1), nullptr);
  EXPECT_EQ(*cache.Find(1), "one");
  EXPECT_EQ(*cache.Find(3), "three");
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.evictions(), 1u);
}

TEST(LruCacheTest, EvictsByCost) {
  LruCache<int, int> cache(100, 10);
  cache.Put(1, 1, 4);
  cache.Put(2, 2, 4);
  EXPECT_EQ(cache.cost(), 8u);
  cache.Put(3, 3, 4);  // 12 > 10: the oldest goes
  EXPECT_EQ(cache.Find(1), nullptr);
  EXPECT_EQ(cache.cost(), 8u);
  EXPECT_EQ(cache.evictions(), 1u);
  cache.Put(4, 4, 11);  // bigger than the whole budget: not stored, nothing evicted
  EXPECT_EQ(cache.Find(4), nullptr);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.evictions(), 1u);
}

TEST(LruCacheTest, ReplaceAndEraseKeepCostExact) {
  LruCache<int, int> cache(10, 0);
  cache.Put(1, 1, 5);
  cache.Put(1, 2, 7);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.cost(), 7u);
  EXPECT_EQ(*cache.Find(1), 2);
  EXPECT_TRUE(cache.Erase(1));
  EXPECT_FALSE(cache.Erase(1));
  EXPECT_EQ(cache.cost(), 0u);
  EXPECT_EQ(cache.evictions(), 0u);  // replacing and erasing are not evictions
}

TEST(LruCacheTest, ZeroEntriesHoldsNothing) {
  LruCache<int, int> cache(0, 0);
  cache.Put(1, 1, 1);
  EXPECT_EQ(cache.Find(1), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace heapwatch::symbolizer
