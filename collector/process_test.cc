#include "collector/process.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "collector/frame_decoder.h"
#include "collector/wire_test_util.h"

namespace heapwatch::collector {
namespace {

using testing::StreamBuilder;

// Feeds a stream into a Process, as a connection would; fails the test on
// a decode error.
struct Feeder : testing::ProcessFeeder {
  using ProcessFeeder::ProcessFeeder;
  void Feed(StreamBuilder& b) { ASSERT_EQ(ProcessFeeder::Feed(b), DecodeError::kNone); }
};

TEST(SampleWeightTest, MatchesPoissonInclusionProbability) {
  EXPECT_DOUBLE_EQ(SampleWeight(100, 1), 1.0);  // R = 1 records everything
  // p(s) = 1 - exp(-s/R): s = R gives p = 0.632..., weight 1.582...
  EXPECT_NEAR(SampleWeight(524288, 524288), 1.0 / (1.0 - std::exp(-1.0)), 1e-12);
  // Tiny allocations: weight ~ R/s.
  EXPECT_NEAR(SampleWeight(16, 524288), 524288.0 / 16, 1.0);
  // Huge allocations are always sampled: weight -> 1.
  EXPECT_NEAR(SampleWeight(100u << 20, 524288), 1.0, 1e-12);
}

TEST(SampleWeightTest, EstimatesAreUnbiasedUnderPoissonSampling) {
  // Simulate the shim's sampler on a known workload and check the collector's
  // estimate against the truth. Fixed seed; the bound is 5 standard errors.
  std::mt19937_64 rng(12345);
  const uint64_t R = 4096;
  std::exponential_distribution<double> exp_dist(1.0 / R);
  std::uniform_int_distribution<uint64_t> size_dist(8, 2048);
  double remaining = exp_dist(rng), estimate = 0, truth = 0, var = 0;
  for (int i = 0; i < 2000000; ++i) {
    uint64_t s = size_dist(rng);
    truth += static_cast<double>(s);
    remaining -= static_cast<double>(s);
    if (remaining <= 0) {
      double w = SampleWeight(s, R);
      estimate += w * static_cast<double>(s);
      var += (w - 1) * w * static_cast<double>(s) * static_cast<double>(s);  // Var of a Horvitz-Thompson term
      remaining = exp_dist(rng);
    }
  }
  EXPECT_NEAR(estimate, truth, 5 * std::sqrt(var)) << "relative error " << (estimate - truth) / truth;
}

TEST(ProcessTest, TracksLiveAndCumulativeByStack) {
  Feeder f;
  StreamBuilder b;
  b.Hello(10, 1).ModulesReset().Module(0x1000, 0x2000, 0x0, "/bin/a").Stack(1, {0x1100})
      .Stack(2, {0x1200, 0x1100}).Alloc(0xa, 100, 1).Alloc(0xb, 50, 2).Alloc(0xc, 25, 2).Free(0xb);
  f.Feed(b);
  Process& p = *f.process;
  ASSERT_EQ(p.stacks().size(), 2u);
  EXPECT_DOUBLE_EQ(p.heap_bytes(), 125);
  EXPECT_DOUBLE_EQ(p.heap_objects(), 2);
  EXPECT_DOUBLE_EQ(p.alloc_bytes(), 175);
  EXPECT_DOUBLE_EQ(p.stacks()[1].stats.live_bytes, 25);
  EXPECT_DOUBLE_EQ(p.stacks()[1].stats.alloc_bytes, 75);
  EXPECT_EQ(p.live_samples(), 2u);
  EXPECT_EQ(p.FindModule(0x1100, p.stacks()[0].epoch)->path, "/bin/a");
  EXPECT_EQ(p.FindModule(0x2000, p.stacks()[0].epoch), nullptr);
  // A module whose file was replaced since it was mapped is looked for at
  // its path (the build-id tells whether what is there now is it).
  StreamBuilder more;
  more.Module(0x3000, 0x4000, 0x3000, "/usr/lib/libold.so (deleted)");
  f.Feed(more);
  EXPECT_EQ(p.FindModule(0x3100, p.stacks()[0].epoch)->path, "/usr/lib/libold.so");
}

TEST(ProcessTest, ResyncReplacesTheLiveViewWithoutDoubleCountingAllocations) {
  Feeder f;
  StreamBuilder b;
  b.Hello(10, 1).Stack(1, {0x1}).Alloc(0xa, 100, 1).Alloc(0xb, 100, 1);
  f.Feed(b);
  // The collector missed the free of 0xa (a drop); the shim's table is the truth.
  StreamBuilder r;
  r.ResyncBegin().Alloc(0xb, 100, 1).ResyncEnd(1, 1).Alloc(0xc, 10, 1);
  f.Feed(r);
  Process& p = *f.process;
  EXPECT_DOUBLE_EQ(p.heap_bytes(), 110);  // no phantom 0xa
  EXPECT_DOUBLE_EQ(p.alloc_bytes(), 210);  // the re-sent 0xb is not a new allocation
  EXPECT_EQ(p.counters().resyncs, 1u);
  EXPECT_FALSE(p.resyncing());
}

TEST(ProcessTest, UnknownFreesAndStacksAreCountedNotFatal) {
  Feeder f;
  StreamBuilder b;
  b.Hello(10, 1).Free(0x99).Alloc(0xa, 8, 12345);
  f.Feed(b);
  EXPECT_EQ(f.process->counters().unknown_frees, 1u);
  EXPECT_EQ(f.process->counters().unknown_stacks, 1u);
  EXPECT_DOUBLE_EQ(f.process->heap_bytes(), 8);  // still counted, under the overflow stack
}

TEST(ProcessTest, CapsStacksAndLiveSamplesWithCountedEviction) {
  Limits l;
  l.max_stacks_per_process = 3;
  l.max_live_samples_per_process = 5;
  Feeder f(l);
  StreamBuilder b;
  b.Hello(10, 1);
  for (uint64_t i = 1; i <= 10; ++i) b.Stack(i, {i});
  for (uint64_t i = 1; i <= 10; ++i) b.Alloc(0x1000 * i, 10, i);
  f.Feed(b);
  Process& p = *f.process;
  EXPECT_EQ(p.stacks().size(), 4u);  // 3 + the overflow pseudo-stack
  EXPECT_EQ(p.counters().evicted_stacks, 7u);
  EXPECT_EQ(p.live_samples(), 5u);
  EXPECT_EQ(p.counters().evicted_samples, 5u);
  EXPECT_DOUBLE_EQ(p.alloc_bytes(), 100);  // totals stay right
}

TEST(ProcessTest, SharedStackBudgetIsReturnedWhenAProcessGoes) {
  Limits l;
  l.max_total_stacks = 4;
  size_t budget = 4;
  StreamBuilder b;
  b.Hello(10, 1);
  HelloMsg hello{};
  hello.hello.sample_bytes = 1;
  {
    Process p(1, 0, hello, l, &budget, 0);
    for (uint64_t i = 1; i <= 6; ++i) {
      uint64_t pc = i;
      p.AddStack({i, reinterpret_cast<const uint8_t*>(&pc), 1});
    }
    EXPECT_EQ(budget, 0u);
    EXPECT_EQ(p.counters().evicted_stacks, 2u);
  }
  EXPECT_EQ(budget, 4u);
}

TEST(ProcessTest, SharedLiveSampleBudgetIsReturnedOnFreeResyncAndExit) {
  Limits l;
  size_t stacks = 10, live = 5;
  HelloMsg hello{};
  hello.hello.sample_bytes = 1;
  auto apply = [](Process& p, wire::EventKind kind, uint64_t first, uint64_t n) {
    std::vector<wire::EventRecord> r;
    for (uint64_t a = first; a < first + n; ++a) {
      r.push_back({static_cast<uint32_t>(kind), 1, a * 64, kind == wire::EventKind::kFree ? 0u : 100u,
                   kind == wire::EventKind::kFree ? 0u : 1u, 1});
    }
    p.ApplyEvents(reinterpret_cast<const uint8_t*>(r.data()), static_cast<uint32_t>(r.size()));
  };
  Process a(1, 0, hello, l, &stacks, 0, &live);
  uint64_t pc = 0x1000;
  a.AddStack({1, reinterpret_cast<const uint8_t*>(&pc), 1});
  {
    Process b(2, 0, hello, l, &stacks, 0, &live);
    b.AddStack({1, reinterpret_cast<const uint8_t*>(&pc), 1});
    apply(a, wire::EventKind::kAlloc, 1, 3);
    apply(b, wire::EventKind::kAlloc, 1, 4);  // room for 2 of them
    EXPECT_EQ(b.live_samples(), 2u);
    EXPECT_EQ(b.counters().evicted_samples, 2u);
    EXPECT_EQ(live, 0u);
    apply(a, wire::EventKind::kFree, 1, 1);
    EXPECT_EQ(live, 1u);
    apply(b, wire::EventKind::kAlloc, 10, 1);
    EXPECT_EQ(b.live_samples(), 3u);
    a.BeginResync();  // a's table is re-sent from nothing
    EXPECT_EQ(live, 2u);
  }
  EXPECT_EQ(live, 5u);  // b is gone: its samples are free for others
  apply(a, wire::EventKind::kAlloc, 1, 5);
  EXPECT_EQ(a.live_samples(), 5u);
  EXPECT_EQ(live, 0u);
}

TEST(ProcessTest, HistoryIsBoundedByThinningOldPoints) {
  Limits l;
  l.max_history_points = 16;
  HelloMsg hello{};
  hello.hello.sample_bytes = 1;
  size_t budget = 10;
  Process p(1, 0, hello, l, &budget, 0);
  for (int i = 0; i < 1000; ++i) p.RecordPoint(i, 1, std::nullopt, std::nullopt);
  EXPECT_LE(p.timeline().size(), 16u);
  EXPECT_DOUBLE_EQ(p.timeline().back().time, 999);
  EXPECT_LT(p.timeline().front().time, 900);  // reaches back further than 16 points
  EXPECT_GT(p.counters().history_thinned, 0u);
}

}  // namespace
}  // namespace heapwatch::collector
