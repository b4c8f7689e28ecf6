#include "collector/module_history.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "heapwatch/wire.h"

namespace heapwatch::collector {
namespace {

constexpr uint32_t Stamp(uint64_t epoch) {
  return wire::kEpochStamped | static_cast<uint32_t>(epoch & (wire::kEpochStamped - 1));
}

// A stack id as the shim makes it: the epoch's low bits on top.
uint64_t IdAt(uint64_t epoch, uint64_t hash = 0x1234) {
  return (epoch << (64 - wire::kStackEpochBits)) | hash;
}

ModuleInfo Mod(uint64_t start, uint64_t end, const std::string& path) {
  ModuleInfo m;
  m.start = start;
  m.end = end;
  m.load_bias = start;
  m.path = path;
  m.build_id = path.substr(path.size() - 1);  // different files, different ids
  return m;
}

const char* PathAt(const ModuleHistory& h, uint64_t pc, uint64_t epoch) {
  const ModuleInfo* m = h.Find(pc, epoch);
  return m ? m->path.c_str() : "none";
}

// The program, and a plugin at 0x7000 that is unloaded (two epoch moves)
// and replaced by another at the same address.
ModuleHistory ReusedAddress() {
  ModuleHistory h;
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(0));
  h.Add(Mod(0x7000, 0x8000, "/lib/plugin_a"), Stamp(0));
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(2));
  h.Add(Mod(0x7000, 0x8000, "/lib/plugin_b"), Stamp(2));
  return h;
}

TEST(ModuleHistoryTest, AStackIsNamedAfterTheMappingOfItsEpoch) {
  ModuleHistory h = ReusedAddress();
  EXPECT_STREQ(PathAt(h, 0x7100, 0), "/lib/plugin_a");
  EXPECT_STREQ(PathAt(h, 0x7100, 2), "/lib/plugin_b");
  // During the dlclose neither map is known to hold: no module, not a guess.
  EXPECT_STREQ(PathAt(h, 0x7100, 1), "none");
  EXPECT_STREQ(PathAt(h, 0x1100, 0), "/bin/app");
  EXPECT_STREQ(PathAt(h, 0x1100, 2), "/bin/app");
  EXPECT_STREQ(PathAt(h, 0x2000, 0), "none");
  EXPECT_EQ(h.loaded(), 2u);
  EXPECT_EQ(h.all().size(), 3u);  // the program once, both plugins
  EXPECT_EQ(h.epoch(), 2u);
}

// The epochs for which Find's answer for `pc` at `epoch` holds, as a pair.
std::pair<uint64_t, uint64_t> RangeAt(const ModuleHistory& h, uint64_t pc, uint64_t epoch) {
  ModuleHistory::EpochRange r;
  h.Find(pc, epoch, &r);
  return {r.first, r.last};
}

TEST(ModuleHistoryTest, TheRangeSaysForWhichEpochsTheAnswerHolds) {
  using Range = std::pair<uint64_t, uint64_t>;
  ModuleHistory h = ReusedAddress();
  EXPECT_EQ(RangeAt(h, 0x7100, 0), Range(0, 0));
  EXPECT_EQ(RangeAt(h, 0x7100, 1), Range(1, 1));
  EXPECT_EQ(RangeAt(h, 0x7100, 2), Range(2, 2));
  EXPECT_EQ(RangeAt(h, 0x1100, 1), Range(0, 2));
  EXPECT_EQ(RangeAt(h, 0x9000, 7), Range(0, UINT64_MAX));  // no module ever
}

TEST(ModuleHistoryTest, StacksGetTheEpochTheirIdCarries) {
  // The shim sends its map before the stacks it has queued: a stack of
  // plugin_a captured before the dlclose arrives after the map without it.
  ModuleHistory h = ReusedAddress();
  uint64_t old_stack = h.StackEpoch(IdAt(0));
  EXPECT_EQ(old_stack, 0u);
  EXPECT_STREQ(PathAt(h, 0x7100, old_stack), "/lib/plugin_a");
  // And one captured after an unload whose map is still to come: nothing
  // yet, not the mapping listed at its address now.
  uint64_t new_stack = h.StackEpoch(IdAt(4));
  EXPECT_EQ(new_stack, 4u);
  EXPECT_STREQ(PathAt(h, 0x7100, new_stack), "none");
  EXPECT_STREQ(PathAt(h, 0x1100, new_stack), "none");
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(4));
  h.Add(Mod(0x7000, 0x8000, "/lib/plugin_c"), Stamp(4));
  EXPECT_STREQ(PathAt(h, 0x7100, new_stack), "/lib/plugin_c");
  EXPECT_STREQ(PathAt(h, 0x1100, new_stack), "/bin/app");
  EXPECT_STREQ(PathAt(h, 0x7100, old_stack), "/lib/plugin_a");
}

TEST(ModuleHistoryTest, EpochsAreWidenedFromTheirLowBits) {
  ModuleHistory h;
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(0x7ffffffe));
  EXPECT_EQ(h.epoch(), 0x7ffffffeu);
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(0x80000001));  // the stamp's 31 bits wrapped
  EXPECT_EQ(h.epoch(), 0x80000001u);
  const uint64_t span = uint64_t{1} << wire::kStackEpochBits;
  EXPECT_EQ(h.StackEpoch(IdAt(0x80000001)), 0x80000001u);
  EXPECT_EQ(h.StackEpoch(IdAt(0x80000001 - 3)), 0x80000001u - 3);
  EXPECT_EQ(h.StackEpoch(IdAt(0x80000001 + 5)), 0x80000001u + 5);
  EXPECT_EQ(h.StackEpoch(IdAt(0x80000001 - span / 2)), 0x80000001u - span / 2);
  EXPECT_EQ(h.StackEpoch(IdAt(0x80000001 + span / 2 - 1)), 0x80000001u + span / 2 - 1);

  // Near epoch 0 a stack cannot be older than 0: its bits read as ahead.
  ModuleHistory young;
  young.BeginMap();
  young.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(1));
  EXPECT_EQ(young.StackEpoch(IdAt(0)), 0u);
  EXPECT_EQ(young.StackEpoch(IdAt(span - 1)), span - 1);
}

TEST(ModuleHistoryTest, TheFirstMapStandsForWhatWasLoadedBeforeIt) {
  // The collector started late (or restarted): the process's older stacks
  // are named after the first map it sees.
  ModuleHistory h;
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(6));
  EXPECT_STREQ(PathAt(h, 0x1100, 0), "/bin/app");
  EXPECT_STREQ(PathAt(h, 0x1100, 6), "/bin/app");
  // A module of a later map is trusted only from that map's epoch: it may
  // have been loaded after an earlier unload that freed its range.
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(8));
  h.Add(Mod(0x7000, 0x8000, "/lib/late"), Stamp(8));
  EXPECT_STREQ(PathAt(h, 0x7100, 6), "none");
  EXPECT_STREQ(PathAt(h, 0x7100, 8), "/lib/late");
}

TEST(ModuleHistoryTest, UnstampedMapsNameStacksAfterTheMapOnArrival) {
  // A shim that does not stamp its maps sends opaque stack ids.
  ModuleHistory h;
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), 0);
  h.Add(Mod(0x7000, 0x8000, "/lib/plugin_a"), 0);
  uint64_t first = h.StackEpoch(0xfedcba9876543210);
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), 0);
  h.Add(Mod(0x7000, 0x8000, "/lib/plugin_b"), 0);
  uint64_t second = h.StackEpoch(0xfedcba9876543210);
  EXPECT_NE(first, second);
  EXPECT_STREQ(PathAt(h, 0x7100, first), "/lib/plugin_a");
  EXPECT_STREQ(PathAt(h, 0x7100, second), "/lib/plugin_b");
  EXPECT_STREQ(PathAt(h, 0x1100, first), "/bin/app");
  EXPECT_STREQ(PathAt(h, 0x1100, second), "/bin/app");
}

TEST(ModuleHistoryTest, AModuleListedAgainIsOneMappingAndAModuleBeforeAnyResetOpensAMap) {
  ModuleHistory h;
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(0));
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(0));  // listed twice
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(0));
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(2));
  ASSERT_EQ(h.all().size(), 1u);
  EXPECT_EQ(h.all()[0].first_epoch, 0u);
  EXPECT_EQ(h.all()[0].last_epoch, 2u);
  EXPECT_EQ(h.loaded(), 1u);
  // Unloaded and loaded again at the same place: a second mapping, so the
  // epochs in between (another object may have been there) stay unnamed.
  h.BeginMap();
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(6));
  EXPECT_EQ(h.all().size(), 2u);
  EXPECT_STREQ(PathAt(h, 0x1100, 4), "none");
  EXPECT_STREQ(PathAt(h, 0x1100, 6), "/bin/app");
}

TEST(ModuleHistoryTest, RetiredMappingsAreCappedOldestFirstAndCounted) {
  // A process that loads and unloads in a loop: at most max_retired old
  // mappings are kept, the most recent ones.
  ModuleHistory h(/*max_retired=*/2);
  for (uint64_t round = 0; round < 10; ++round) {
    h.BeginMap();
    h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(2 * round));
    h.Add(Mod(0x7000, 0x8000, "/lib/plugin" + std::to_string(round)), Stamp(2 * round));
  }
  // The cap applies to what a complete map no longer lists, when the next
  // one begins: plugins 7 and 8 are kept, plugin9 is the latest unloaded.
  h.BeginMap();
  h.Add(Mod(0x1000, 0x2000, "/bin/app"), Stamp(20));
  EXPECT_EQ(h.all().size(), 1u + 2u + 1u);
  EXPECT_EQ(h.dropped(), 7u);
  EXPECT_STREQ(PathAt(h, 0x7100, 18), "/lib/plugin9");
  EXPECT_STREQ(PathAt(h, 0x7100, 16), "/lib/plugin8");
  EXPECT_STREQ(PathAt(h, 0x7100, 14), "/lib/plugin7");
  EXPECT_STREQ(PathAt(h, 0x7100, 12), "none");  // forgotten
  EXPECT_STREQ(PathAt(h, 0x1100, 0), "/bin/app");  // still loaded: never dropped
}

TEST(ModuleHistoryTest, ModulesOfOneMapAreCapped) {
  ModuleHistory h;
  h.BeginMap();
  for (uint64_t i = 0; i < ModuleHistory::kMaxLoaded; ++i) {
    ASSERT_TRUE(h.Add(Mod(0x1000 * (i + 1), 0x1000 * (i + 1) + 0x800, "/lib/x"), Stamp(0)));
  }
  EXPECT_FALSE(h.Add(Mod(0x1000 * (ModuleHistory::kMaxLoaded + 1), 0x1000 * (ModuleHistory::kMaxLoaded + 2),
                         "/lib/y"),
                     Stamp(0)));
  EXPECT_EQ(h.loaded(), ModuleHistory::kMaxLoaded);
  EXPECT_EQ(h.dropped(), 1u);
}

TEST(ModuleHistoryTest, OverlappingMappingsAreAllFound) {
  // A long retired mapping that starts before a shorter current one and
  // covers the pc beyond it: the walk back must not stop at the first miss.
  ModuleHistory h;
  h.BeginMap();
  h.Add(Mod(0x1000, 0x9000, "/lib/big"), Stamp(0));
  h.BeginMap();
  h.Add(Mod(0x2000, 0x3000, "/lib/small"), Stamp(2));
  h.Add(Mod(0x5000, 0x6000, "/lib/other"), Stamp(2));
  EXPECT_STREQ(PathAt(h, 0x8000, 0), "/lib/big");
  EXPECT_STREQ(PathAt(h, 0x2100, 0), "/lib/big");
  EXPECT_STREQ(PathAt(h, 0x2100, 2), "/lib/small");
  EXPECT_STREQ(PathAt(h, 0x8000, 2), "none");
}

}  // namespace
}  // namespace heapwatch::collector
