#include "collector/call_tree.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "collector/pprof.h"
#include "collector/profile_data.h"

namespace heapwatch::collector {
namespace {

// A hand-made profile: main -> work -> {leak (inlined helper), churn}.
ProfileData MakeProfile(double leak_bytes, double churn_bytes) {
  ProfileData d;
  d.pid = 5;
  d.exe = "/bin/app";
  d.sample_bytes = 1;
  d.modules.push_back({0, 0x1000, 0x9000, 0, "\x01", "/bin/app"});
  auto frame = [](const char* fn, const char* file, int line, bool inlined = false) {
    FrameInfo f;
    f.function = fn;
    f.file = file;
    f.module = "/bin/app";
    f.line = line;
    f.inlined = inlined;
    return f;
  };
  d.frames = {frame("main", "app.cc", 10), frame("work", "app.cc", 20), frame("leak", "app.cc", 30),
              frame("helper", "util.h", 5, true), frame("churn", "app.cc", 40)};
  // Locations: 0 = main, 1 = work, 2 = leak with helper inlined, 3 = churn.
  d.location_frames = {0, 1, 3, 2, 4};
  d.locations = {{0x1100, 0, 0, 1}, {0x1200, 0, 1, 1}, {0x1300, 0, 2, 2}, {0x1400, 0, 4, 1}};
  d.sample_locations = {2, 1, 0, 3, 1, 0};  // innermost first
  ProfileData::Sample leak{1, 0, 3, {}};
  leak.stats = {1, leak_bytes, 1, leak_bytes, 1};
  ProfileData::Sample churn{2, 3, 3, {}};
  churn.stats = {4, churn_bytes * 4, 0, 0, 0};
  d.samples = {leak, churn};
  return d;
}

const nlohmann::json* Child(const nlohmann::json& node, const std::string& name) {
  for (const auto& c : node["children"]) {
    if (c["name"] == name) return &c;
  }
  return nullptr;
}

TEST(CallTreeTest, MergesFromRootToLeavesWithInlinedFrames) {
  ProfileData d = MakeProfile(1000, 100);
  auto tree = BuildCallTree(d, nullptr, {SampleType::kInuseSpace});
  EXPECT_EQ(tree["total"], 1000.0);
  const auto* main = Child(tree["root"], "main");
  ASSERT_TRUE(main);
  const auto* work = Child(*main, "work");
  ASSERT_TRUE(work);
  const auto* leak = Child(*work, "leak");
  ASSERT_TRUE(leak);
  const auto* helper = Child(*leak, "helper");  // the inlined frame sits below its caller
  ASSERT_TRUE(helper);
  EXPECT_TRUE((*helper)["inlined"].get<bool>());
  EXPECT_EQ((*helper)["self"], 1000.0);
  EXPECT_EQ((*helper)["file"], "util.h");
  EXPECT_FALSE(Child(*work, "churn"));  // nothing live there

  auto alloc = BuildCallTree(d, nullptr, {SampleType::kAllocObjects});
  EXPECT_EQ(alloc["unit"], "objects");
  EXPECT_EQ(alloc["total"], 5.0);
  EXPECT_EQ((*Child(*Child(*Child(alloc["root"], "main"), "work"), "churn"))["value"], 4.0);
}

TEST(CallTreeTest, DiffAgainstABaseShowsWhatGrew) {
  ProfileData base = MakeProfile(400, 100);
  ProfileData now = MakeProfile(1000, 100);
  auto tree = BuildCallTree(now, &base, {SampleType::kInuseSpace});
  EXPECT_EQ(tree["base_total"], 400.0);
  const auto* leak = Child(*Child(*Child(tree["root"], "main"), "work"), "leak");
  ASSERT_TRUE(leak);
  EXPECT_EQ((*leak)["base"], 400.0);
  EXPECT_EQ((*leak)["delta"], 600.0);
}

TEST(CallTreeTest, SmallNodesArePrunedButCountedInTheirParent) {
  ProfileData d = MakeProfile(1000, 100);
  d.samples[1].stats.live_bytes = 0.5;  // tiny live churn
  auto tree = BuildCallTree(d, nullptr, {SampleType::kInuseSpace, 0.01});
  const auto* work = Child(*Child(tree["root"], "main"), "work");
  EXPECT_FALSE(Child(*work, "churn"));
  EXPECT_EQ((*work)["value"], 1000.5);
}

// Random samples over a few functions, some frames inlined: many stacks
// share prefixes, and values span orders of magnitude (so the threshold
// cuts at every depth).
ProfileData RandomProfile(std::mt19937_64& rng, size_t samples) {
  ProfileData d;
  d.modules.push_back({0, 0x1000, 0x9000, 0, "\x01", "/bin/app"});
  for (int i = 0; i < 12; ++i) {
    FrameInfo f;
    f.function = "fn" + std::to_string(i % 9);  // fn0..fn8, three also inlined
    f.module = "/bin/app";
    f.inlined = i >= 9;
    d.frames.push_back(f);
  }
  for (uint32_t l = 0; l < 30; ++l) {
    uint32_t first = static_cast<uint32_t>(d.location_frames.size());
    uint32_t n = 1 + (rng() % 4 == 0);
    for (uint32_t k = 0; k < n; ++k) d.location_frames.push_back(static_cast<uint32_t>(rng() % 12));
    d.locations.push_back({0x1000 + l * 16, 0, first, n});
  }
  for (size_t i = 0; i < samples; ++i) {
    ProfileData::Sample s;
    s.stack_id = i + 1;
    s.first_location = static_cast<uint32_t>(d.sample_locations.size());
    s.depth = 1 + static_cast<uint32_t>(rng() % 6);
    for (uint32_t k = 0; k < s.depth; ++k) d.sample_locations.push_back(static_cast<uint32_t>(rng() % 30));
    double bytes = std::pow(10.0, static_cast<double>(rng() % 5)) * (1 + rng() % 9);
    s.stats = {1, bytes, 1, bytes, 1};
    d.samples.push_back(s);
  }
  return d;
}

// Every node the tree shows, by its path of names from the root, with its
// value and self value.
void Flatten(const nlohmann::json& node, const std::string& path,
             std::map<std::string, std::pair<double, double>>& out) {
  out[path] = {node["value"].get<double>(), node["self"].get<double>()};
  for (const auto& c : node["children"]) {
    Flatten(c, path + "/" + c["name"].get<std::string>() + (c["inlined"].get<bool>() ? "(i)" : ""), out);
  }
}

TEST(CallTreeTest, ShowsExactlyTheNodesAtOrAboveTheThresholdWithTheirTotals) {
  std::mt19937_64 rng(17);
  for (int round = 0; round < 20; ++round) {
    ProfileData d = RandomProfile(rng, 200);
    const double min_share = round % 2 ? 0.01 : 0.001;
    // By brute force: every prefix of every sample's path (outermost first)
    // and what it adds up to.
    std::map<std::string, std::pair<double, double>> all;
    double total = 0;
    for (const auto& s : d.samples) {
      std::string path;
      total += s.stats.live_bytes;
      all[path].first += s.stats.live_bytes;
      auto locs = d.SampleLocations(s);
      for (auto it = locs.rbegin(); it != locs.rend(); ++it) {
        auto frames = d.LocationFrames(d.locations[*it]);
        for (auto f = frames.rbegin(); f != frames.rend(); ++f) {
          const FrameInfo& fi = d.frames[*f];
          path += "/" + fi.function + (fi.inlined ? "(i)" : "");
          all[path].first += s.stats.live_bytes;
        }
      }
      all[path].second += s.stats.live_bytes;
    }
    std::map<std::string, std::pair<double, double>> want;
    for (const auto& [path, v] : all) {
      if (path.empty() || v.first >= min_share * total) want[path] = v;
    }
    auto tree = BuildCallTree(d, nullptr, {SampleType::kInuseSpace, min_share});
    std::map<std::string, std::pair<double, double>> got;
    Flatten(tree["root"], "", got);
    ASSERT_EQ(got.size(), want.size()) << "round " << round;
    for (const auto& [path, v] : want) {
      ASSERT_TRUE(got.count(path)) << path;
      EXPECT_DOUBLE_EQ(got[path].first, v.first) << path;
      EXPECT_DOUBLE_EQ(got[path].second, v.second) << path;
    }
    EXPECT_EQ(tree["nodes"].get<size_t>(), want.size());
    EXPECT_FALSE(tree["truncated"].get<bool>());
  }
}

TEST(CallTreeTest, MaxNodesTruncatesAndSaysSo) {
  std::mt19937_64 rng(23);
  ProfileData d = RandomProfile(rng, 300);
  CallTreeOptions options{SampleType::kInuseSpace, 0};
  options.max_nodes = 10;
  auto tree = BuildCallTree(d, nullptr, options);
  EXPECT_EQ(tree["nodes"].get<size_t>(), 10u);
  EXPECT_TRUE(tree["truncated"].get<bool>());
}

TEST(ProfileDataTest, JsonRoundTripKeepsEverything) {
  ProfileData d = MakeProfile(1000, 100);
  std::string error;
  auto back = ProfileDataFromJson(ProfileDataToJson(d), &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(BuildCallTree(*back, nullptr, {}).dump(), BuildCallTree(d, nullptr, {}).dump());
  EXPECT_EQ(EncodePprof(*back, SampleType::kInuseSpace), EncodePprof(d, SampleType::kInuseSpace));
  EXPECT_EQ(back->modules[0].build_id, "\x01");
}

TEST(ProfileDataTest, MalformedSnapshotJsonIsRejected) {
  std::string error;
  auto doc = ProfileDataToJson(MakeProfile(1, 1));
  doc["sample_locations"][0] = 999;  // out of range
  EXPECT_FALSE(ProfileDataFromJson(doc, &error));
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(ProfileDataFromJson(nlohmann::json::object(), &error));
  EXPECT_FALSE(ProfileDataFromJson(nlohmann::json::array(), &error));
}

TEST(ProfileDataTest, BlameSkipsTheAllocator) {
  ProfileData d = MakeProfile(1, 1);
  d.frames[3].function = "operator new(unsigned long)";  // pretend helper is new
  const FrameInfo* blame = d.BlameFrame(d.samples[0]);
  ASSERT_TRUE(blame);
  EXPECT_EQ(blame->function, "leak");
}

TEST(PprofTest, GzipRoundTripsThroughZlib) {
  std::string raw = EncodePprof(MakeProfile(1000, 100), SampleType::kInuseSpace);
  ASSERT_FALSE(raw.empty());
  std::string gz = Gzip(raw);
  ASSERT_GT(gz.size(), 10u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  // The string table holds every sample type name.
  for (const char* name : {"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}) {
    EXPECT_NE(raw.find(name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace heapwatch::collector
