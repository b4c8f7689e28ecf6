#include "collector/analysis.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace heapwatch::collector {
namespace {

constexpr double kMiB = 1048576.0;

std::vector<SeriesPoint> Series(double seconds, double step, double (*f)(double)) {
  std::vector<SeriesPoint> out;
  for (double t = 0; t <= seconds + 1e-9; t += step) out.push_back({1000 + t, f(t)});
  return out;
}

// Shapes of memory over time, in bytes, t in seconds since start.
double Leak(double t) { return 10 * kMiB + 4 * kMiB * t; }
double Sawtooth(double t) { return 20 * kMiB + 2 * kMiB * std::fmod(t, 3.0); }  // flushed every 3 s
double Cache(double t) { return 20 * kMiB + 1 * kMiB * std::min(t, 10.0); }       // fills for 10 s

TEST(TheilSenTest, ExactOnALineAndUnmovedByOutliers) {
  std::vector<SeriesPoint> line;
  for (int i = 0; i < 50; ++i) line.push_back({static_cast<double>(i), 3.0 * i + 7});
  EXPECT_DOUBLE_EQ(TheilSenSlope(line), 3.0);
  // Spikes on a fifth of the points (e.g. a transient buffer) leave the
  // median slope where it was; least squares would follow them.
  for (int i = 0; i < 50; i += 5) line[static_cast<size_t>(i)].v += 1e6 * (i % 2 ? 1 : -1);
  EXPECT_NEAR(TheilSenSlope(line), 3.0, 0.5);
  EXPECT_EQ(TheilSenSlope({}), 0);
  std::vector<SeriesPoint> same_time = {{1, 1}, {1, 5}};
  EXPECT_EQ(TheilSenSlope(same_time), 0);
}

TEST(TheilSenTest, ThinningBoundsTheWorkAndKeepsTheSlope) {
  std::vector<SeriesPoint> long_line;
  for (int i = 0; i < 5000; ++i) long_line.push_back({i * 0.5, 2.0 * i});
  EXPECT_NEAR(TheilSenSlope(long_line, 100), 4.0, 1e-9);
}

TEST(FloorTest, SuffixMinimumFlattensASawtooth) {
  auto saw = Series(30, 0.5, Sawtooth);
  auto floor = FloorOf(saw);
  ASSERT_EQ(floor.size(), saw.size());
  for (size_t i = 0; i < floor.size(); ++i) {
    EXPECT_LE(floor[i].v, saw[i].v);
    if (i + 1 < floor.size()) {
      EXPECT_LE(floor[i].v, floor[i + 1].v);
    }
  }
  // Before the last flush the floor is the trough.
  EXPECT_DOUBLE_EQ(floor.front().v, 20 * kMiB);
}

TEST(KendallTauTest, SignsAndTies) {
  std::vector<SeriesPoint> up = {{0, 1}, {1, 2}, {2, 3}}, down = {{0, 3}, {1, 2}, {2, 1}}, flat = {{0, 1}, {1, 1}};
  EXPECT_DOUBLE_EQ(KendallTau(up), 1);
  EXPECT_DOUBLE_EQ(KendallTau(down), -1);
  EXPECT_DOUBLE_EQ(KendallTau(flat), 0);
  // A step function (a leak seen through sampling) is still perfectly monotonic.
  std::vector<SeriesPoint> steps = {{0, 0}, {1, 0}, {2, 5}, {3, 5}, {4, 9}};
  EXPECT_DOUBLE_EQ(KendallTau(steps), 1);
}

TEST(FitTrendTest, LeakScoresHighWithItsRate) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0, 0.5 * kMiB);
  std::vector<SeriesPoint> s;
  for (double t = 0; t <= 20; t += 0.5) s.push_back({t, Leak(t) + noise(rng)});
  Trend t = FitTrend(s);
  EXPECT_NEAR(t.slope, 4 * kMiB, 0.4 * kMiB);
  EXPECT_NEAR(t.recent_slope, 4 * kMiB, 0.6 * kMiB);
  EXPECT_GT(t.tau, 0.9);
  EXPECT_GT(t.r2, 0.95);
  EXPECT_GT(t.score, 0.8);
}

TEST(FitTrendTest, SawtoothAndFilledCacheAreNotSustainedGrowth) {
  Trend saw = FitTrend(Series(60, 0.5, Sawtooth));
  // In-tooth growth is 2 MiB/s; the floor does not grow.
  EXPECT_LT(std::min(saw.slope, saw.recent_slope), 0.05 * kMiB);
  EXPECT_LT(saw.score, 0.3);
  Trend cache = FitTrend(Series(60, 0.5, Cache));
  EXPECT_GT(cache.slope, -1e-9);
  EXPECT_LT(cache.recent_slope, 0.01 * kMiB);  // the recent half is flat
  EXPECT_LT(cache.score, 0.1);
}

std::deque<TimelinePoint> Timeline(double seconds, double (*f)(double), bool cgroup = true, bool rss = true) {
  std::deque<TimelinePoint> out;
  for (double t = 0; t <= seconds + 1e-9; t += 0.5) {
    TimelinePoint p;
    p.time = 1000 + t;
    p.heap_bytes = f(t) / 2;
    if (rss) p.rss_bytes = static_cast<uint64_t>(f(t) * 0.9);
    if (cgroup) p.cgroup_bytes = static_cast<uint64_t>(f(t));
    out.push_back(p);
  }
  return out;
}

TEST(PredictTest, TimeToOomOfASteadyLeak) {
  AnalysisConfig config;
  const uint64_t limit = 128 << 20;
  auto timeline = Timeline(10, Leak);
  double now = timeline.back().time;
  Prediction p = Predict(timeline, now, limit, config);
  EXPECT_EQ(p.source, "cgroup");
  ASSERT_TRUE(p.growing);
  ASSERT_TRUE(p.time_to_oom.has_value());
  double truth = (static_cast<double>(limit) - Leak(10)) / (4 * kMiB);
  EXPECT_NEAR(*p.time_to_oom, truth, 0.1 * truth);
  EXPECT_NEAR(*p.oom_at, now + *p.time_to_oom, 1e-6);
  EXPECT_TRUE(p.trusted);
  EXPECT_LT(p.extrapolation, config.max_extrapolation);
}

TEST(PredictTest, ShortTrendIsNotTrustedFarAhead) {
  // 0.3 MiB/s for 11 s (a cache filling): growing, but a time to OOM of
  // minutes is too far to extrapolate from 11 s.
  AnalysisConfig config;
  auto timeline = Timeline(11, [](double t) { return 15 * kMiB + 0.3 * kMiB * t; });
  Prediction p = Predict(timeline, timeline.back().time, 128 << 20, config);
  ASSERT_TRUE(p.growing);
  ASSERT_TRUE(p.time_to_oom.has_value());
  EXPECT_GT(*p.time_to_oom, 300);
  EXPECT_FALSE(p.trusted);
  EXPECT_GT(p.extrapolation, config.max_extrapolation);
}

TEST(PredictTest, FallsBackToRssThenHeapAndNeedsALimit) {
  AnalysisConfig config;
  auto no_cgroup = Timeline(10, Leak, false, true);
  EXPECT_EQ(Predict(no_cgroup, no_cgroup.back().time, 128 << 20, config).source, "rss");
  auto heap_only = Timeline(10, Leak, false, false);
  Prediction heap = Predict(heap_only, heap_only.back().time, std::nullopt, config);
  EXPECT_EQ(heap.source, "heap");
  EXPECT_TRUE(heap.growing);
  EXPECT_FALSE(heap.time_to_oom.has_value());  // no limit, no prediction
}

TEST(PredictTest, NoPredictionForSawtoothCacheOrTooLittleHistory) {
  AnalysisConfig config;
  for (auto f : {Sawtooth, Cache}) {
    auto timeline = Timeline(60, f);
    Prediction p = Predict(timeline, timeline.back().time, 128 << 20, config);
    // Either not growing, or so slowly the OOM is far beyond any alert.
    if (p.time_to_oom) {
      EXPECT_GT(*p.time_to_oom, 3600);
    }
  }
  auto young = Timeline(3, Leak);  // less than min_span_seconds of history
  EXPECT_FALSE(Predict(young, young.back().time, 128 << 20, config).growing);
  EXPECT_FALSE(Predict({}, 0, 128 << 20, config).growing);
}

TEST(PredictTest, GarbageInputDoesNotCrash) {
  AnalysisConfig config;
  std::deque<TimelinePoint> bad;
  for (double v : {std::nan(""), 1e300, -5.0, std::numeric_limits<double>::infinity()}) {
    TimelinePoint p;
    p.time = v;
    p.heap_bytes = v;
    bad.push_back(p);
  }
  Prediction p = Predict(bad, 0, 1, config);
  if (p.time_to_oom) {
    EXPECT_TRUE(std::isfinite(*p.time_to_oom));
  }
}

// Four stacks as the shim's sampling shows them over 40 s: a leak (steps of
// one sample weight), a cache that plateaus, a sawtooth flushed every 3 s and
// churn around zero; plus many static stacks larger than the leak at first.
TEST(StackTrackerTest, RanksTheLeakFirstAmongCacheSawtoothChurnAndStaticHeap) {
  AnalysisConfig config;
  config.max_tracked_stacks = 8;
  StackTracker tracker(config);
  std::mt19937 rng(42);
  std::poisson_distribution<int> leak_samples(4);  // 8 samples/s of 512 KiB
  std::uniform_real_distribution<double> churn(0, 2 * kMiB);
  const size_t kStatic = 100;
  std::vector<double> live(4 + kStatic, 0);
  for (size_t i = 4; i < live.size(); ++i) live[i] = 50 * kMiB + static_cast<double>(i);
  for (double t = 0; t <= 40; t += 0.5) {
    live[0] += leak_samples(rng) * 0.5 * kMiB;
    live[1] = 8 * kMiB * std::min(t, 6.0) / 6.0;
    live[2] = 2 * kMiB * std::fmod(t, 3.0);
    live[3] = churn(rng);
    tracker.Observe(1000 + t, live);
  }
  EXPECT_LE(tracker.tracked(), 2 * config.max_tracked_stacks);
  std::vector<LeakSuspect> suspects = tracker.Rank();
  ASSERT_FALSE(suspects.empty());
  const LeakSuspect& top = suspects.front();
  EXPECT_EQ(top.stack, 0u);
  EXPECT_NEAR(top.growth_bytes_per_sec, 4 * kMiB, 1 * kMiB);
  EXPECT_GT(top.score, 0.8);
  EXPECT_GT(top.share_of_growth, 0.8);
  for (const auto& s : suspects) {
    if (s.stack != 0) {
      EXPECT_LT(s.growth_bytes_per_sec * s.score, 0.05 * top.growth_bytes_per_sec) << s.stack;
    }
  }
}

TEST(StackTrackerTest, SeriesStayBounded) {
  AnalysisConfig config;
  config.max_tracked_stacks = 4;
  config.max_series_points = 32;
  config.window_seconds = 1e6;  // only the point cap bounds the series
  StackTracker tracker(config);
  std::vector<double> live(1000);
  for (int tick = 0; tick < 500; ++tick) {
    // A different set of stacks grows each tick.
    for (size_t i = 0; i < live.size(); ++i) live[i] = static_cast<double>((i * 7919 + tick * 104729) % 1000);
    tracker.Observe(tick, live);
    ASSERT_LE(tracker.tracked(), 8u);
  }
  for (const auto& s : tracker.Rank()) EXPECT_LE(s.span, 500);
}

TEST(StackTrackerTest, FewerStacksThanBeforeIsHarmless) {
  AnalysisConfig config;
  StackTracker tracker(config);
  std::vector<double> many(10, kMiB), few(2, kMiB);
  tracker.Observe(0, many);
  tracker.Observe(1, few);  // stack indices beyond the vector read as zero
  tracker.Observe(2, {});
  EXPECT_GE(tracker.tracked(), 2u);
}

}  // namespace
}  // namespace heapwatch::collector
