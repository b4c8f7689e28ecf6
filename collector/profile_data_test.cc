#include "collector/profile_data.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "collector/wire_test_util.h"

namespace heapwatch::collector {
namespace {

using testing::StreamBuilder;

struct Feeder : testing::ProcessFeeder {
  void Feed(StreamBuilder& b) { ASSERT_EQ(ProcessFeeder::Feed(b), DecodeError::kNone); }
};

constexpr uint32_t Stamp(uint32_t epoch) { return wire::kEpochStamped | epoch; }

// A stack id as a stamping shim makes it: the epoch's low bits on top.
uint64_t IdAt(uint64_t epoch, uint64_t hash) { return (epoch << (64 - wire::kStackEpochBits)) | hash; }

// The innermost frame's name of each sample, by stack id.
std::vector<std::pair<uint64_t, std::string>> InnermostNames(const ProfileData& d) {
  std::vector<std::pair<uint64_t, std::string>> out;
  for (const auto& s : d.samples) {
    const auto& loc = d.locations[d.SampleLocations(s).front()];
    out.emplace_back(s.stack_id, d.frames[d.LocationFrames(loc).front()].function);
  }
  return out;
}

// alpha.so is mapped at 0x7000, dlclose'd (the epoch moves 0 -> 2) with a
// block of its own still live, and beta.so is loaded in its place. Both
// stacks have the same pcs. The shim sends the map with beta before the
// stack of alpha's block (its sender had queued the stack): the stack's id
// says which map names it.
TEST(ProfileDataTest, StacksWithTheSamePcsAreNamedAfterTheModulesOfTheirEpoch) {
  Feeder f;
  StreamBuilder b;
  b.Hello(10, 1)
      .ModulesReset()
      .Module(0x1000, 0x2000, 0x1000, "/bin/app", "\x01", Stamp(0))
      .Module(0x7000, 0x8000, 0x7000, "/lib/alpha.so", "\x0a", Stamp(0))
      .ModulesReset()
      .Module(0x1000, 0x2000, 0x1000, "/bin/app", "\x01", Stamp(2))
      .Module(0x7000, 0x8000, 0x7000, "/lib/beta.so", "\x0b", Stamp(2))
      .Stack(IdAt(0, 0x11), {0x7100, 0x1100})
      .Stack(IdAt(2, 0x22), {0x7100, 0x1100})
      .Alloc(0xa0, 100, IdAt(0, 0x11))
      .Alloc(0xb0, 30, IdAt(2, 0x22));
  f.Feed(b);
  const Process& p = *f.process;
  EXPECT_EQ(p.module_history().loaded(), 2u);
  ProfileData d = BuildProfileData(p, nullptr, 0);
  ASSERT_EQ(d.samples.size(), 2u);
  std::vector<std::pair<uint64_t, std::string>> want = {{IdAt(0, 0x11), "alpha.so+0x100"},
                                                        {IdAt(2, 0x22), "beta.so+0x100"}};
  EXPECT_EQ(InnermostNames(d), want);
  EXPECT_EQ(d.samples[0].stats.live_bytes, 100);
  // The program's pc is one location, the plugins' pc two.
  EXPECT_EQ(d.locations.size(), 3u);
  // Both plugins stay in the profile's modules (pprof's mappings).
  EXPECT_EQ(d.modules.size(), 3u);
}

TEST(ProfileDataTest, UnstampedMapsNameAStackAfterTheMapCurrentWhenItArrived) {
  // An older shim: opaque stack ids, maps without epochs.
  Feeder f;
  StreamBuilder b;
  b.Hello(10, 1)
      .ModulesReset()
      .Module(0x1000, 0x2000, 0x1000, "/bin/app")
      .Module(0x7000, 0x8000, 0x7000, "/lib/alpha.so")
      .Stack(0x11, {0x7100, 0x1100})
      .Alloc(0xa0, 100, 0x11)
      .ModulesReset()
      .Module(0x1000, 0x2000, 0x1000, "/bin/app")
      .Module(0x7000, 0x8000, 0x7000, "/lib/beta.so")
      .Stack(0x22, {0x7100, 0x1100})
      .Alloc(0xb0, 30, 0x22);
  f.Feed(b);
  ProfileData d = BuildProfileData(*f.process, nullptr, 0);
  std::vector<std::pair<uint64_t, std::string>> want = {{0x11, "alpha.so+0x100"}, {0x22, "beta.so+0x100"}};
  EXPECT_EQ(InnermostNames(d), want);
}

TEST(ProfileDataTest, AStackAheadOfItsMapIsNamedWhenTheMapArrives) {
  // Captured after an unload whose map the shim has not sent yet: no
  // module for now (not the one mapped there before), named once the map
  // is in (a new builder: the module generation moved).
  Feeder f;
  StreamBuilder b;
  b.Hello(10, 1)
      .ModulesReset()
      .Module(0x1000, 0x2000, 0x1000, "/bin/app", "", Stamp(0))
      .Module(0x7000, 0x8000, 0x7000, "/lib/alpha.so", "", Stamp(0))
      .Stack(IdAt(2, 0x22), {0x7100, 0x1100})
      .Alloc(0xb0, 30, IdAt(2, 0x22));
  f.Feed(b);
  const Process& p = *f.process;
  ProfileBuilder builder(p, nullptr);
  EXPECT_EQ(InnermostNames(builder.Update(p, 0)).at(0).second, "[unknown]+0x7100");
  StreamBuilder map;
  map.ModulesReset()
      .Module(0x1000, 0x2000, 0x1000, "/bin/app", "", Stamp(2))
      .Module(0x7000, 0x8000, 0x7000, "/lib/beta.so", "", Stamp(2));
  f.Feed(map);
  EXPECT_TRUE(builder.Stale(p));
  EXPECT_EQ(InnermostNames(BuildProfileData(p, nullptr, 0)).at(0).second, "beta.so+0x100");
}

}  // namespace
}  // namespace heapwatch::collector
