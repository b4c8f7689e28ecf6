#include "collector/analysis.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>

#include "collector/profile_data.h"

namespace heapwatch::collector {

namespace {

// Evenly thins `points` to at most `max_points`, always keeping the last.
std::vector<SeriesPoint> Thin(std::span<const SeriesPoint> points, size_t max_points) {
  if (points.size() <= max_points || max_points < 2) return {points.begin(), points.end()};
  std::vector<SeriesPoint> out;
  out.reserve(max_points);
  double step = static_cast<double>(points.size() - 1) / static_cast<double>(max_points - 1);
  for (size_t i = 0; i < max_points; ++i) {
    out.push_back(points[std::min(points.size() - 1, static_cast<size_t>(std::lround(step * i)))]);
  }
  return out;
}

std::span<const SeriesPoint> Since(std::span<const SeriesPoint> points, double start) {
  auto it = std::lower_bound(points.begin(), points.end(), start,
                             [](const SeriesPoint& p, double t) { return p.t < t; });
  return points.subspan(static_cast<size_t>(it - points.begin()));
}

// Window lengths the trends are fitted over: short ones notice a new leak
// soon, the long one sees slow growth through noise.
std::vector<double> Windows(const AnalysisConfig& c) {
  std::vector<double> out;
  for (double w : {4 * c.min_span_seconds, c.window_seconds / 4, c.window_seconds}) {
    if (w >= c.min_span_seconds && w <= c.window_seconds &&
        std::none_of(out.begin(), out.end(), [w](double x) { return std::abs(x - w) < 1e-9; })) {
      out.push_back(w);
    }
  }
  if (out.empty()) out.push_back(std::max(c.window_seconds, c.min_span_seconds));
  return out;
}

// A trend's sustained growth: the floor's slope, unless it has recently
// flattened (a cache that filled), in which case the recent slope.
double SustainedGrowth(const Trend& t) { return std::max(0.0, std::min(t.slope, t.recent_slope)); }

bool Finite(double v) { return std::isfinite(v); }

}  // namespace

double TheilSenSlope(std::span<const SeriesPoint> input, size_t max_points) {
  std::vector<SeriesPoint> points = Thin(input, max_points);
  std::vector<double> slopes;
  slopes.reserve(points.size() * (points.size() - (points.empty() ? 0 : 1)) / 2);
  for (size_t i = 0; i < points.size(); ++i) {
    for (size_t j = i + 1; j < points.size(); ++j) {
      double dt = points[j].t - points[i].t;
      if (dt > 1e-9) slopes.push_back((points[j].v - points[i].v) / dt);
    }
  }
  if (slopes.empty()) return 0;
  size_t mid = slopes.size() / 2;
  std::nth_element(slopes.begin(), slopes.begin() + static_cast<std::ptrdiff_t>(mid), slopes.end());
  double upper = slopes[mid];
  if (slopes.size() % 2 == 1) return upper;
  double lower = *std::max_element(slopes.begin(), slopes.begin() + static_cast<std::ptrdiff_t>(mid));
  return (lower + upper) / 2;
}

std::vector<SeriesPoint> FloorOf(std::span<const SeriesPoint> points) {
  std::vector<SeriesPoint> out(points.begin(), points.end());
  for (size_t i = out.size(); i-- > 1;) out[i - 1].v = std::min(out[i - 1].v, out[i].v);
  return out;
}

double KendallTau(std::span<const SeriesPoint> input, size_t max_points) {
  std::vector<SeriesPoint> points = Thin(input, max_points);
  double concordant = 0, discordant = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    for (size_t j = i + 1; j < points.size(); ++j) {
      if (points[j].v > points[i].v) ++concordant;
      else if (points[j].v < points[i].v) ++discordant;
    }
  }
  double pairs = concordant + discordant;
  return pairs > 0 ? (concordant - discordant) / pairs : 0;
}

double LeastSquaresR2(std::span<const SeriesPoint> points) {
  if (points.size() < 3) return 0;
  double n = static_cast<double>(points.size()), st = 0, sv = 0;
  for (const auto& p : points) {
    st += p.t;
    sv += p.v;
  }
  double mt = st / n, mv = sv / n, stt = 0, svv = 0, stv = 0;
  for (const auto& p : points) {
    stt += (p.t - mt) * (p.t - mt);
    svv += (p.v - mv) * (p.v - mv);
    stv += (p.t - mt) * (p.v - mv);
  }
  if (stt <= 0 || svv <= 0) return 0;
  return std::clamp(stv * stv / (stt * svv), 0.0, 1.0);
}

Trend FitTrend(std::span<const SeriesPoint> points, size_t max_points) {
  Trend t;
  t.points = points.size();
  if (points.empty()) return t;
  t.last = points.back().v;
  t.span = points.back().t - points.front().t;
  if (points.size() < 3 || t.span <= 0) return t;
  std::vector<SeriesPoint> floor = FloorOf(points);
  t.slope = TheilSenSlope(floor, max_points);
  t.recent_slope = TheilSenSlope(Since(floor, points.back().t - t.span / 2), max_points);
  t.raw_slope = TheilSenSlope(points, max_points);
  t.tau = KendallTau(points, max_points);
  t.r2 = LeastSquaresR2(points);
  double recency = t.slope > 0 ? std::clamp(t.recent_slope / t.slope, 0.0, 1.0) : 0.0;
  t.score = std::max(0.0, t.tau) * recency;
  return t;
}

Prediction Predict(const std::deque<TimelinePoint>& timeline, double now, std::optional<uint64_t> limit,
                   const AnalysisConfig& config) {
  Prediction out;
  out.limit = limit;
  if (timeline.empty()) return out;
  // The series the limit applies to, when the poller could read it.
  const TimelinePoint& last = timeline.back();
  out.source = last.cgroup_bytes ? "cgroup" : last.rss_bytes ? "rss" : "heap";
  double start = now - config.window_seconds;
  std::vector<SeriesPoint> series;
  for (auto it = timeline.rbegin(); it != timeline.rend() && it->time >= start; ++it) {
    std::optional<double> v;
    if (out.source == "cgroup" && it->cgroup_bytes) v = static_cast<double>(*it->cgroup_bytes);
    if (out.source == "rss" && it->rss_bytes) v = static_cast<double>(*it->rss_bytes);
    if (out.source == "heap") v = it->heap_bytes;
    if (v && Finite(*v) && Finite(it->time)) series.push_back({it->time, *v});
  }
  std::reverse(series.begin(), series.end());
  if (series.empty()) return out;
  out.usage = series.back().v;
  out.trend = FitTrend(series);
  // Per window: growth and the time to OOM it implies. The most urgent
  // trusted window decides; failing that, the most urgent one (reported, but
  // not trusted enough to alert on).
  const double headroom = limit ? std::max(0.0, static_cast<double>(*limit) - out.usage) : 0;
  struct Candidate {
    Trend trend;
    double growth = 0, tto = 0;
    bool trusted = false;
  };
  std::optional<Candidate> best;
  for (double w : Windows(config)) {
    std::span<const SeriesPoint> window = Since(series, series.back().t - w);
    Candidate c;
    c.trend = FitTrend(window);
    if (c.trend.span < config.min_span_seconds || c.trend.tau < config.min_tau) continue;
    c.growth = SustainedGrowth(c.trend);
    if (c.growth <= 0) continue;
    c.tto = limit ? headroom / c.growth : std::numeric_limits<double>::infinity();
    c.trusted = limit && c.tto <= config.max_extrapolation * c.trend.span;
    bool better = !best || (c.trusted && !best->trusted) ||
                  (c.trusted == best->trusted && c.growth > best->growth);
    if (better) best = c;
  }
  if (!best) return out;
  out.trend = best->trend;
  out.growing = true;
  if (limit) {
    out.time_to_oom = best->tto;
    out.oom_at = now + best->tto;
    out.extrapolation = best->trend.span > 0 ? best->tto / best->trend.span : 0;
    out.trusted = best->trusted;
  }
  return out;
}

void StackTracker::Observe(double now, std::span<const double> live) {
  const size_t cap = std::max<size_t>(config_.max_tracked_stacks, 1);
  // Candidates: the largest stacks, and the fastest growing since the last
  // tick (a new leak is small at first).
  std::vector<uint32_t> by_size, by_growth;
  for (uint32_t i = 0; i < live.size(); ++i) {
    if (live[i] > 0) by_size.push_back(i);
    double before = i < previous_.size() ? previous_[i] : 0;
    if (live[i] > before) by_growth.push_back(i);
  }
  auto take_top = [&](std::vector<uint32_t>& v, size_t n, auto key) {
    if (v.size() > n) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n), v.end(),
                       [&](uint32_t a, uint32_t b) { return key(a) > key(b); });
      v.resize(n);
    }
  };
  take_top(by_size, cap / 2 + cap % 2, [&](uint32_t i) { return live[i]; });
  take_top(by_growth, cap / 2, [&](uint32_t i) {
    return live[i] - (i < previous_.size() ? previous_[i] : 0);
  });
  for (uint32_t i : by_size) tracks_.try_emplace(i);
  for (uint32_t i : by_growth) tracks_.try_emplace(i);

  // Record every tracked stack (a stack that shrank to zero records zeros:
  // that is evidence too), then evict the smallest beyond twice the cap.
  const double start = now - config_.window_seconds;
  for (auto& [index, series] : tracks_) {
    double v = index < live.size() ? live[index] : 0;
    series.push_back({now, Finite(v) ? v : 0});
    while (!series.empty() && series.front().t < start) series.pop_front();
    if (series.size() > std::max<size_t>(config_.max_series_points, 16)) {
      // Thin the older half to every other point, as the timeline does.
      std::deque<SeriesPoint> thinned;
      size_t half = series.size() / 2;
      for (size_t i = 0; i < half; i += 2) thinned.push_back(series[i]);
      for (size_t i = half; i < series.size(); ++i) thinned.push_back(series[i]);
      series.swap(thinned);
    }
  }
  if (tracks_.size() > 2 * cap) {
    std::vector<std::pair<double, uint32_t>> order;
    for (const auto& [index, series] : tracks_) {
      order.push_back({series.empty() ? 0 : series.back().v, index});
    }
    std::sort(order.begin(), order.end());
    for (size_t i = 0; i + 2 * cap < order.size(); ++i) tracks_.erase(order[i].second);
  }
  previous_.assign(live.begin(), live.end());
}

std::vector<LeakSuspect> StackTracker::Rank() const {
  std::vector<LeakSuspect> out;
  double total_growth = 0;
  for (const auto& [index, series] : tracks_) {
    std::vector<SeriesPoint> points(series.begin(), series.end());
    // The strongest window for this stack: a leak that began recently shows
    // in the short one, a slow one in the long one.
    LeakSuspect best;
    bool found = false;
    for (double w : Windows(config_)) {
      std::span<const SeriesPoint> window = points.empty() ? std::span<const SeriesPoint>()
                                                           : Since(points, points.back().t - w);
      // Fewer points per stack than for the usage: up to 2 × max_tracked_stacks
      // stacks are fitted every tick.
      Trend t = FitTrend(window, 80);
      if (t.span < config_.min_span_seconds) continue;
      double growth = SustainedGrowth(t);
      if (!found || growth * t.score > best.growth_bytes_per_sec * best.score) {
        best.stack = index;
        best.live_bytes = t.last;
        best.growth_bytes_per_sec = growth;
        best.score = t.score;
        best.tau = t.tau;
        best.r2 = t.r2;
        best.span = t.span;
        found = true;
      }
    }
    if (!found || best.growth_bytes_per_sec <= 0) continue;
    total_growth += best.growth_bytes_per_sec;
    out.push_back(best);
  }
  for (auto& s : out) s.share_of_growth = total_growth > 0 ? s.growth_bytes_per_sec / total_growth : 0;
  std::sort(out.begin(), out.end(), [](const LeakSuspect& a, const LeakSuspect& b) {
    double sa = a.growth_bytes_per_sec * a.score, sb = b.growth_bytes_per_sec * b.score;
    return sa != sb ? sa > sb : a.stack < b.stack;
  });
  return out;
}

const ProcessAnalysis& Analyzer::Update(const Process& process, double now, std::optional<uint64_t> limit) {
  auto [it, inserted] = states_.try_emplace(KeyOf(process), config_);
  State& state = it->second;
  std::vector<double> live;
  live.reserve(process.stacks().size());
  for (const Stack& s : process.stacks()) live.push_back(s.stats.live_bytes);
  // During a resync the live view is being rebuilt: a dip there is not a
  // free, so the stacks keep their history and skip this tick.
  if (!process.resyncing()) state.stacks.Observe(now, live);
  state.analysis.time = now;
  state.analysis.prediction = Predict(process.timeline(), now, limit, config_);
  state.analysis.suspects = state.stacks.Rank();
  const Prediction& p = state.analysis.prediction;
  for (auto& s : state.analysis.suspects) {
    if (s.stack < process.stacks().size()) s.stack_id = process.stacks()[s.stack].wire_id;
    double needed = config_.leak_established_seconds;
    if (limit && s.growth_bytes_per_sec > 0) {
      s.time_to_fill = std::max(0.0, static_cast<double>(*limit) - p.usage) / s.growth_bytes_per_sec;
      needed = std::min(needed, *s.time_to_fill / config_.max_extrapolation);
    }
    s.established = s.span >= std::max(needed, config_.min_span_seconds);
  }
  return state.analysis;
}

const ProcessAnalysis* Analyzer::Find(const Process& process) const {
  auto it = states_.find(KeyOf(process));
  return it == states_.end() ? nullptr : &it->second.analysis;
}

void Analyzer::Retain(const std::vector<const Process*>& alive) {
  std::map<Key, bool> keep;
  for (const Process* p : alive) keep[KeyOf(*p)] = true;
  for (auto it = states_.begin(); it != states_.end();) {
    it = keep.count(it->first) ? std::next(it) : states_.erase(it);
  }
}

std::map<uint32_t, SampleAges> LiveSampleAges(const Process& process, const std::vector<uint32_t>& stacks,
                                              double now) {
  std::map<uint32_t, std::vector<double>> ages;
  for (uint32_t s : stacks) ages[s];
  for (const auto& [address, sample] : process.live()) {
    auto it = ages.find(sample.stack);
    if (it == ages.end() || it->second.size() >= 100000) continue;
    it->second.push_back(std::max(0.0, now - static_cast<double>(sample.time_ns) / 1e9));
  }
  std::map<uint32_t, SampleAges> out;
  for (auto& [s, v] : ages) {
    SampleAges a;
    a.samples = static_cast<uint32_t>(v.size());
    if (!v.empty()) {
      a.oldest = *std::max_element(v.begin(), v.end());
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      a.median = v[v.size() / 2];
    }
    out[s] = a;
  }
  return out;
}

const FrameInfo* SuspectFrame(const ProfileData& data, size_t sample_index) {
  if (sample_index >= data.samples.size()) return nullptr;
  const ProfileData::Sample& sample = data.samples[sample_index];
  const FrameInfo* blame = data.BlameFrame(sample);
  if (!blame) return nullptr;
  static const char* kLibraryPrefixes[] = {"std::", "__gnu_cxx::", "__cxxabi", "__std", "void std::"};
  bool past_blame = false;
  for (uint32_t loc : data.SampleLocations(sample)) {
    if (loc >= data.locations.size()) continue;
    for (uint32_t fi : data.LocationFrames(data.locations[loc])) {
      if (fi >= data.frames.size()) continue;
      const FrameInfo& f = data.frames[fi];
      if (&f == blame) past_blame = true;
      if (!past_blame) continue;
      // Inlined standard-library code: by its header's path, or by its name
      // (names like "decltype (...) std::construct_at<...>(...)" start with
      // the return type, so look at the qualified name before the arguments).
      bool library = f.unsymbolized || f.file.find("/include/c++/") != std::string::npos ||
                     f.file.find("/bits/") != std::string::npos;
      std::string head = f.function.substr(0, f.function.find('('));
      for (const char* prefix : kLibraryPrefixes) library |= head.rfind(prefix, 0) == 0;
      library |= head.rfind("decltype", 0) == 0 || f.function.find(" std::") < f.function.find('(');
      if (!library) return &f;
    }
  }
  return blame;
}

nlohmann::json PredictionJson(const ProcessAnalysis* analysis) {
  if (!analysis || !analysis->prediction.growing || !analysis->prediction.time_to_oom) return nullptr;
  const Prediction& p = analysis->prediction;
  return {{"bytes_per_sec", SustainedGrowth(p.trend)},
          {"time_to_oom_sec", *p.time_to_oom},
          {"oom_at", *p.oom_at},
          {"source", p.source},
          {"window_sec", p.trend.span},
          {"tau", p.trend.tau},
          {"trusted", p.trusted}};
}

nlohmann::json LeaksJson(const Process& process, const ProcessAnalysis* analysis, const ProfileData& data,
                         double now, size_t max_suspects) {
  using nlohmann::json;
  json out = {{"pid", process.pid()}, {"growth_bytes_per_sec", nullptr}, {"time_to_oom_sec", nullptr},
              {"limit_bytes", nullptr}, {"suspects", json::array()}};
  if (!analysis) return out;
  const Prediction& p = analysis->prediction;
  out["time"] = analysis->time;
  out["source"] = p.source;
  out["growth_bytes_per_sec"] = p.growing ? SustainedGrowth(p.trend) : 0.0;
  if (p.time_to_oom) out["time_to_oom_sec"] = *p.time_to_oom;
  if (p.limit) out["limit_bytes"] = *p.limit;
  out["usage_bytes"] = p.usage;

  std::vector<const LeakSuspect*> shown;
  for (const auto& s : analysis->suspects) {
    if (shown.size() >= max_suspects) break;
    shown.push_back(&s);
  }
  std::vector<uint32_t> stacks;
  for (const auto* s : shown) stacks.push_back(s->stack);
  std::map<uint32_t, SampleAges> ages = LiveSampleAges(process, stacks, now);
  std::map<uint64_t, size_t> sample_by_id;
  for (size_t i = 0; i < data.samples.size(); ++i) sample_by_id[data.samples[i].stack_id] = i;

  int rank = 0;
  for (const auto* s : shown) {
    char id[24];
    std::snprintf(id, sizeof(id), "%016" PRIx64, s->stack_id);
    json item = {{"rank", ++rank},
                 {"stack_id", id},
                 {"function", nullptr},
                 {"file", nullptr},
                 {"line", nullptr},
                 {"frames", json::array()},
                 {"live_bytes", s->live_bytes},
                 {"growth_bytes_per_sec", s->growth_bytes_per_sec},
                 {"share_of_growth", s->share_of_growth},
                 {"score", s->score},
                 {"tau", s->tau},
                 {"r2", s->r2},
                 {"window_sec", s->span},
                 {"established", s->established}};
    const SampleAges& a = ages[s->stack];
    item["live_samples"] = a.samples;
    item["oldest_age_sec"] = a.oldest;
    item["median_age_sec"] = a.median;
    if (auto found = sample_by_id.find(s->stack_id); found != sample_by_id.end()) {
      item["frames"] = SampleFramesJson(data, data.samples[found->second]);
      if (const FrameInfo* f = SuspectFrame(data, found->second)) {
        item["function"] = f->function;
        item["file"] = f->file;
        item["line"] = f->line;
      }
    }
    out["suspects"].push_back(std::move(item));
  }
  return out;
}

}  // namespace heapwatch::collector
