#include "unloaded_code.h"

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace heapwatch::preload {
namespace {

TEST(UnloadedCodeTest, GoneCodeIsWhatNoIdenticalRangeMatches) {
  const CodeRange before[] = {{0x1000, 0x3000, 1}, {0x5000, 0x6000, 2}, {0x8000, 0x9000, 3}, {0xa000, 0xb000, 4}};
  // 1 stays; 2 goes and nothing takes its place; 3 goes and another object
  // (another id) is mapped over it; 4's place holds the same object again.
  const CodeRange after[] = {{0x1000, 0x3000, 1}, {0x8800, 0x9800, 9}, {0xa000, 0xb000, 4}};
  CodeRange gone[4];
  bool replaced = false;
  ASSERT_EQ(GoneCode(before, 4, after, 3, gone, 4, &replaced), 2u);
  EXPECT_EQ(gone[0].lo, 0x5000u);
  EXPECT_EQ(gone[1].lo, 0x8000u);
  EXPECT_TRUE(replaced);

  // The same addresses under another id are other code.
  const CodeRange other[] = {{0x1000, 0x3000, 7}};
  replaced = false;
  ASSERT_EQ(GoneCode(before, 1, other, 1, gone, 4, &replaced), 1u);
  EXPECT_TRUE(replaced);

  // Nothing overlaps: gone, not replaced. More gone than fit: all counted.
  replaced = false;
  EXPECT_EQ(GoneCode(before, 4, nullptr, 0, gone, 1, &replaced), 4u);
  EXPECT_EQ(gone[0].lo, 0x1000u);
  EXPECT_FALSE(replaced);
}

// An address range that was mapped and is free now.
CodeRange FreedRange(size_t pages) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, pages * page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  munmap(p, pages * page);
  auto lo = reinterpret_cast<uintptr_t>(p);
  return CodeRange{lo, lo + pages * page, 1};
}

bool FreeForMapping(const CodeRange& r) {
  void* want = reinterpret_cast<void*>(r.lo);
  void* got = mmap(want, r.hi - r.lo, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (got == MAP_FAILED) return false;
  munmap(got, r.hi - r.lo);
  return got == want;
}

TEST(UnloadedCodeTest, AReservedRangeTakesNoOtherMappingUntilReleased) {
  CodeReservations reservations;
  CodeRange r = FreedRange(4);
  ASSERT_TRUE(FreeForMapping(r));
  ASSERT_TRUE(reservations.Reserve(r));
  EXPECT_TRUE(reservations.Reserve(r));  // already reserved
  EXPECT_EQ(reservations.size(), 1u);
  EXPECT_FALSE(FreeForMapping(r));
  // Neither does the kernel place a mapping without an address there.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* q = mmap(nullptr, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(q, MAP_FAILED);
  auto qa = reinterpret_cast<uintptr_t>(q);
  EXPECT_FALSE(qa >= r.lo && qa < r.hi);
  munmap(q, page);
  reservations.ReleaseAll();
  EXPECT_EQ(reservations.size(), 0u);
  EXPECT_TRUE(FreeForMapping(r));
}

TEST(UnloadedCodeTest, ARangeWithSomethingMappedCannotBeReserved) {
  CodeReservations reservations;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, 2 * page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto lo = reinterpret_cast<uintptr_t>(p);
  EXPECT_FALSE(reservations.Reserve(CodeRange{lo, lo + 2 * page, 1}));
  EXPECT_EQ(reservations.size(), 0u);
  // The mapping that was there is untouched.
  EXPECT_EQ(mincore(p, 2 * page, nullptr), -1);  // EFAULT for the vector, not ENOMEM
  EXPECT_EQ(errno, EFAULT);
  munmap(p, 2 * page);
}

TEST(UnloadedCodeTest, TheListHasRoomForKMaxReservations) {
  CodeReservations reservations;
  for (size_t i = 0; i < CodeReservations::kMaxReservations; ++i) {
    ASSERT_TRUE(reservations.Reserve(FreedRange(1))) << i;
  }
  CodeRange extra = FreedRange(1);
  EXPECT_FALSE(reservations.Reserve(extra));
  EXPECT_TRUE(FreeForMapping(extra));
  reservations.ReleaseAll();
}

TEST(UnloadedCodeTest, LoadedCodeListsThisProgramsCode) {
  CodeRange ranges[512];
  size_t n = LoadedCode(ranges, 512);
  ASSERT_GT(n, 0u);
  ASSERT_LE(n, 512u);
  auto self = reinterpret_cast<uintptr_t>(&FreedRange);
  int holding = 0;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_LT(ranges[i].lo, ranges[i].hi);
    EXPECT_EQ(ranges[i].lo % static_cast<uintptr_t>(sysconf(_SC_PAGESIZE)), 0u);
    if (self >= ranges[i].lo && self < ranges[i].hi) ++holding;
  }
  EXPECT_EQ(holding, 1);
  // A short list says how long the whole one is.
  EXPECT_EQ(LoadedCode(ranges, 1), n);
}

}  // namespace
}  // namespace heapwatch::preload
