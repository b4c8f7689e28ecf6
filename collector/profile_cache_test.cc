#include "collector/profile_cache.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <map>
#include <random>

#include "collector/call_tree.h"
#include "collector/pprof.h"
#include "collector/wire_test_util.h"

namespace heapwatch::collector {
namespace {

using testing::ProcessFeeder;
using testing::StreamBuilder;

constexpr uint64_t kModuleStart = 0x400000, kModuleEnd = 0x500000;
constexpr uint64_t kShimStart = 0x700000, kShimEnd = 0x710000;

// Stacks over a small pool of pcs (most in the module, some outside it), so
// they share locations and frames as a program's do.
// Innermost, half of them start in the shim's own library (its malloc).
std::vector<uint64_t> RandomStack(std::mt19937_64& rng) {
  std::vector<uint64_t> pcs(1 + rng() % 10);
  for (auto& pc : pcs) pc = (rng() % 8 ? kModuleStart : 0x900000) + 16 * (rng() % 40);
  if (rng() % 2) pcs.insert(pcs.begin(), kShimStart + 16 * (rng() % 4));
  return pcs;
}

// Adds `stacks` new stacks (ids from first_id) and allocations on them, and
// frees some earlier allocations.
void Grow(ProcessFeeder& f, std::mt19937_64& rng, uint64_t first_id, size_t stacks) {
  StreamBuilder b;
  for (size_t i = 0; i < stacks; ++i) b.Stack(first_id + i, RandomStack(rng));
  for (size_t i = 0; i < stacks * 3; ++i) {
    b.Alloc(0x10000000 + (first_id * 64 + i) * 64, 16 + rng() % 4096, 1 + rng() % (first_id + stacks - 1));
  }
  for (size_t i = 0; i < stacks; ++i) b.Free(0x10000000 + (rng() % (first_id * 64 + i + 1)) * 64);
  ASSERT_EQ(f.Feed(b), DecodeError::kNone);
}

// Starts process `pid` in `f` (a feeder cannot move: its Process points
// at its budget).
void Start(ProcessFeeder& f, uint32_t pid = 7) {
  StreamBuilder b;
  b.Hello(pid, 4096, pid).ModulesReset().Module(kModuleStart, kModuleEnd, 0, "/bin/app", "\x01\x02");
  b.Module(kShimStart, kShimEnd, kShimStart, "/usr/lib/heapwatch/libheapwatch.so", "\x03");
  ASSERT_EQ(f.Feed(b), DecodeError::kNone);
}

TEST(ProfileBuilderTest, UpdatesMatchAFreshBuildAsTheProcessGrows) {
  ProcessFeeder f;
  Start(f);
  std::mt19937_64 rng(3);
  ProfileBuilder builder(*f.process, nullptr);
  uint64_t next_id = 1;
  for (int round = 0; round < 4; ++round) {
    Grow(f, rng, next_id, 40);
    next_id += 40;
    const ProfileData& kept = builder.Update(*f.process, 100);
    ProfileData fresh = BuildProfileData(*f.process, nullptr, 100);
    ASSERT_EQ(kept.samples.size(), fresh.samples.size()) << "round " << round;
    ASSERT_GT(kept.samples.size(), 0u);
    for (size_t i = 0; i < kept.samples.size(); ++i) {
      EXPECT_EQ(kept.samples[i].stack_id, fresh.samples[i].stack_id);
      EXPECT_EQ(kept.samples[i].stats.live_bytes, fresh.samples[i].stats.live_bytes);
      EXPECT_EQ(kept.samples[i].stats.alloc_objects, fresh.samples[i].stats.alloc_objects);
      auto frames = SampleFramesJson(kept, kept.samples[i]);
      EXPECT_EQ(frames, SampleFramesJson(fresh, fresh.samples[i]));
      for (const auto& f : frames) EXPECT_NE(f["module"], "/usr/lib/heapwatch/libheapwatch.so") << "shim frame shown";
    }
    for (auto type : {SampleType::kInuseSpace, SampleType::kAllocObjects}) {
      EXPECT_EQ(BuildCallTree(kept, nullptr, {type}).dump(), BuildCallTree(fresh, nullptr, {type}).dump());
      EXPECT_EQ(EncodePprof(kept, type), EncodePprof(fresh, type));
    }
  }
  EXPECT_FALSE(builder.Stale(*f.process));
  StreamBuilder b;
  b.Module(0x800000, 0x880000, 0, "/lib/libplugin.so");  // a dlopen
  ASSERT_EQ(f.Feed(b), DecodeError::kNone);
  EXPECT_TRUE(builder.Stale(*f.process));
}

TEST(ProfileCacheTest, UpdatesKeptProfilesAndStaysWithinItsBounds) {
  ProcessFeeder a, b;
  Start(a, 7);
  Start(b, 8);
  std::mt19937_64 rng(5);
  Grow(a, rng, 1, 30);
  Grow(b, rng, 1, 30);

  ProfileCache one(/*max_entries=*/1, /*max_bytes=*/64 << 20, /*idle_seconds=*/10);
  one.Get(*a.process, nullptr, 1);
  one.Get(*a.process, nullptr, 2);
  EXPECT_EQ(one.stats().builds, 1u);
  EXPECT_EQ(one.stats().hits, 1u);
  one.Get(*b.process, nullptr, 3);  // a goes: one entry at most
  one.Get(*a.process, nullptr, 4);
  EXPECT_EQ(one.stats().builds, 3u);
  EXPECT_EQ(one.size(), 1u);
  one.Expire(14);  // asked for at 4: not idle for 10 s yet
  EXPECT_EQ(one.size(), 1u);
  one.Expire(15);
  EXPECT_EQ(one.size(), 0u);

  // A new module map: the kept profile is rebuilt, not patched.
  ProfileCache cache;
  cache.Get(*a.process, nullptr, 1);
  StreamBuilder dl;
  dl.Module(0x800000, 0x880000, 0, "/lib/libplugin.so");
  ASSERT_EQ(a.Feed(dl), DecodeError::kNone);
  cache.Get(*a.process, nullptr, 2);
  EXPECT_EQ(cache.stats().builds, 2u);

  // Bigger than the whole budget: served every time, never kept.
  ProfileCache tiny(4, /*max_bytes=*/1024, 300);
  const ProfileData& served = tiny.Get(*a.process, nullptr, 1);
  EXPECT_GT(served.samples.size(), 0u);
  EXPECT_GT(served.ApproxBytes(), 1024u);
  std::string gz = tiny.Pprof(*a.process, nullptr, 2, SampleType::kInuseSpace);
  EXPECT_GT(gz.size(), 20u);
  EXPECT_EQ(tiny.stats().builds, 2u);
  EXPECT_EQ(tiny.stats().oversize, 2u);
  tiny.Expire(3);
  EXPECT_EQ(tiny.size(), 0u);
}

// All gzip members of `gz`, inflated and joined; *members counts them.
std::string Gunzip(const std::string& gz, size_t* members) {
  std::string out;
  *members = 0;
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in = static_cast<uInt>(gz.size());
  char buf[65536];
  while (true) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    int rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_STREAM_END) {
      ++*members;
      if (z.avail_in == 0) break;
      inflateReset(&z);  // the next member
      continue;
    }
    if (rc != Z_OK) {
      ADD_FAILURE() << "inflate: " << rc;
      break;
    }
  }
  inflateEnd(&z);
  return out;
}

// A profile.proto's top-level fields, by number, each in order of appearance.
std::map<uint64_t, std::vector<std::string>> Fields(const std::string& pb) {
  std::map<uint64_t, std::vector<std::string>> fields;
  size_t i = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0; i < pb.size(); shift += 7) {
      auto byte = static_cast<uint8_t>(pb[i++]);
      v |= uint64_t{byte & 0x7fu} << shift;
      if (!(byte & 0x80)) break;
    }
    return v;
  };
  while (i < pb.size()) {
    uint64_t tag = varint();
    if ((tag & 7) == 0) {
      fields[tag >> 3].push_back(std::to_string(varint()));
    } else if ((tag & 7) == 2) {
      uint64_t n = varint();
      fields[tag >> 3].push_back(pb.substr(i, n));
      i += n;
    } else {
      ADD_FAILURE() << "unexpected wire type " << (tag & 7);
      break;
    }
  }
  return fields;
}

TEST(PprofEncoderTest, AGrowingProfileIsTheSameProfileAsAFreshEncoding) {
  ProcessFeeder f;
  Start(f);
  std::mt19937_64 rng(11);
  ProfileBuilder builder(*f.process, nullptr);
  PprofEncoder encoder;
  size_t structure_members = 0, locations_before = 0;
  uint64_t next_id = 1;
  for (int round = 0; round < 3; ++round) {
    Grow(f, rng, next_id, 25);
    next_id += 25;
    const ProfileData& data = builder.Update(*f.process, 50 + round);
    std::string gz = encoder.Encode(data, SampleType::kInuseSpace);
    // The same fields as one fresh encoding: repeated fields in the same
    // order (locations, functions, the string table's indexes), only split
    // across members: one per growth of the structure, one for the figures.
    size_t members = 0;
    std::string pb = Gunzip(gz, &members);
    if (round == 0 || data.locations.size() > locations_before) ++structure_members;
    locations_before = data.locations.size();
    EXPECT_EQ(members, structure_members + 1) << "round " << round;
    EXPECT_EQ(Fields(pb), Fields(EncodePprof(data, SampleType::kInuseSpace))) << "round " << round;
  }
}

}  // namespace
}  // namespace heapwatch::collector
