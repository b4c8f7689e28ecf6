// Growth analysis: is a process's memory growing, when will it reach its
// limit, and which allocation stacks are responsible.
//
// The trend. Memory of a healthy service moves in three shapes that a naive
// slope confuses with a leak: churn (noise), a cache that fills and then
// plateaus, and a sawtooth (a buffer or a GC heap that grows and is flushed).
// Two transforms separate them from a leak:
//  - the floor: for each point, the minimum of the series from that point to
//    now (a suffix minimum). A flush pulls the whole floor before it down, so
//    a sawtooth's floor is flat once one flush has been seen; a leak's floor
//    rises with it. The slope of the floor is what predicts the OOM kill.
//  - the Theil–Sen estimator (median of all pairwise slopes), which ignores up
//    to ~29% of outlying points, instead of least squares.
// A cache's floor rises while it fills; what tells it from a leak is that its
// recent slope falls to zero, so a trend also reports the slope over the most
// recent half of its window, and a leak score multiplies Kendall's tau (how
// consistently the raw series goes up) by recent/overall slope.
//
// Per-stack series. Each tick the analyzer records the estimated live bytes
// of a bounded set of stacks per process: the largest, plus the fastest
// growing since the previous tick (a new leak is small at first). Series are
// bounded in points and in time.
//
// Not thread-safe: the collector's loop thread only.
#ifndef HEAPWATCH_COLLECTOR_ANALYSIS_H_
#define HEAPWATCH_COLLECTOR_ANALYSIS_H_

#include <nlohmann/json.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "collector/config.h"
#include "collector/process.h"

namespace heapwatch::collector {

struct ProfileData;

struct SeriesPoint {
  double t = 0;
  double v = 0;
};

// Median of pairwise slopes (Theil–Sen); 0 with fewer than two distinct times.
// At most `max_points` points are used (evenly thinned), bounding the cost to
// max_points² / 2 pairs.
double TheilSenSlope(std::span<const SeriesPoint> points, size_t max_points = 160);
// Suffix minimum: out[i].v = min(points[i..].v). Times are kept.
std::vector<SeriesPoint> FloorOf(std::span<const SeriesPoint> points);
// Kendall's tau over pairs that differ (ties ignored), in [-1, 1]; 0 when
// every pair ties.
double KendallTau(std::span<const SeriesPoint> points, size_t max_points = 160);
// R² of the least-squares line; 0 for a flat or too short series.
double LeastSquaresR2(std::span<const SeriesPoint> points);

struct Trend {
  size_t points = 0;
  double span = 0;          // seconds between first and last point
  double slope = 0;         // bytes/s, Theil–Sen slope of the floor
  double recent_slope = 0;  // the same over the most recent half of the span
  double raw_slope = 0;     // Theil–Sen slope of the raw series
  double tau = 0;           // Kendall's tau of the raw series
  double r2 = 0;            // least squares R² of the raw series
  double last = 0;          // latest value
  // Leak score in [0, 1]: max(0, tau) × clamp(recent_slope / slope, 0, 1).
  double score = 0;
};
// Points must be in time order. At most `max_points` (evenly thinned) enter
// the O(n²) estimators.
Trend FitTrend(std::span<const SeriesPoint> points, size_t max_points = 160);

// What the usage trend predicts for one process.
struct Prediction {
  std::string source;       // "cgroup", "rss" or "heap": the series used
  Trend trend;
  double usage = 0;         // latest value of that series
  std::optional<uint64_t> limit;
  bool growing = false;     // a trend with enough history, a positive floor slope
  std::optional<double> time_to_oom;  // seconds; only when growing and a limit is known
  std::optional<double> oom_at;       // Unix seconds
  // time_to_oom / the trend's span; trusted when at most max_extrapolation.
  // Only a trusted prediction raises the time_to_oom alert.
  double extrapolation = 0;
  bool trusted = false;
};

struct LeakSuspect {
  uint32_t stack = 0;       // index into Process::stacks()
  uint64_t stack_id = 0;    // the shim's id (hex in JSON)
  double live_bytes = 0;
  double growth_bytes_per_sec = 0;  // floor slope of its live bytes
  double share_of_growth = 0;       // of all tracked stacks' positive growth
  double score = 0;
  double tau = 0;
  double r2 = 0;
  double span = 0;          // seconds of history behind the figures
  // Headroom / growth: how soon this stack alone would fill the limit.
  std::optional<double> time_to_fill;
  // Grown for long enough to call it a leak: for max(min_span,
  // min(leak_established_seconds, time_to_fill / max_extrapolation)).
  bool established = false;
};

struct ProcessAnalysis {
  double time = 0;
  Prediction prediction;
  std::vector<LeakSuspect> suspects;  // ranked, strongest first
};

// Picks a process's usage series (cgroup usage, else RSS, else the heap
// estimate) and predicts from its trend over several sliding windows the time
// to reaching `limit`; the most urgent window with a trustworthy trend wins.
Prediction Predict(const std::deque<TimelinePoint>& timeline, double now, std::optional<uint64_t> limit,
                   const AnalysisConfig& config);

// Bounded per-stack live-bytes history for one process, and the suspects
// ranked from it.
class StackTracker {
 public:
  explicit StackTracker(const AnalysisConfig& config) : config_(config) {}
  // live[i] is the estimated live bytes of stack i now.
  void Observe(double now, std::span<const double> live);
  // Stacks whose live bytes grow, strongest (growth × score) first. stack_id
  // is left 0 (the caller knows the ids).
  std::vector<LeakSuspect> Rank() const;
  size_t tracked() const { return tracks_.size(); }

 private:
  AnalysisConfig config_;
  std::map<uint32_t, std::deque<SeriesPoint>> tracks_;  // by stack index
  std::vector<double> previous_;                        // live bytes at the previous tick
};

class Analyzer {
 public:
  explicit Analyzer(AnalysisConfig config) : config_(std::move(config)) {}

  // Records this tick for a running process and refreshes its analysis.
  // `limit` is the memory limit that applies (--memory-limit or the cgroup's).
  const ProcessAnalysis& Update(const Process& process, double now, std::optional<uint64_t> limit);
  // The latest analysis of a process (running or exited), or nullptr.
  const ProcessAnalysis* Find(const Process& process) const;
  // Drops the state of processes no longer in `alive` (evicted from the table).
  void Retain(const std::vector<const Process*>& alive);

  const AnalysisConfig& config() const { return config_; }

 private:
  struct State {
    explicit State(const AnalysisConfig& c) : stacks(c) {}
    ProcessAnalysis analysis;
    StackTracker stacks;
  };
  using Key = std::pair<uint32_t, uint64_t>;  // pid, start_time_ns
  static Key KeyOf(const Process& p) { return {p.pid(), p.start_time_ns()}; }

  AnalysisConfig config_;
  std::map<Key, State> states_;
};

// Evidence for the report: age of a stack's live samples.
struct SampleAges {
  uint32_t samples = 0;
  double oldest = 0;  // seconds
  double median = 0;
};
// Ages of the live samples of the given stacks (one pass over live samples).
std::map<uint32_t, SampleAges> LiveSampleAges(const Process& process, const std::vector<uint32_t>& stacks,
                                              double now);

// The function to blame for a sample: ProfileData::BlameFrame, then past
// inlined standard-library helpers (std::make_unique, containers) to the
// first frame of the program's own code.
const struct FrameInfo* SuspectFrame(const ProfileData& data, size_t sample_index);

// The /api/v1/leaks document (also stored in snapshots). `data` gives names;
// at most `max_suspects` suspects are listed.
nlohmann::json LeaksJson(const Process& process, const ProcessAnalysis* analysis, const ProfileData& data,
                         double now, size_t max_suspects = 20);
// The "prediction" object of /api/v1/timeline, or null.
nlohmann::json PredictionJson(const ProcessAnalysis* analysis);

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_ANALYSIS_H_
