// The profiles of the processes people are looking at, kept between
// requests so each request pays for what changed since the last one
// (ProfileBuilder), not for the whole profile: the UI refreshes every few
// seconds, and a 100k-stack profile takes far longer than that budget to
// build from scratch.
//
// Bounded: it holds at most `max_entries` processes and `max_bytes` of
// profiles (least recently used out first), and drops a profile no one asked
// for in `idle_seconds`. A profile bigger than the whole budget (a process
// with millions of distinct frames) is built for the request and dropped at
// the next call or Expire(): served, more slowly, but never kept. The
// builder's own indexes (pc and frame lookups) come on top of the estimate.
// Loop thread only.
#ifndef HEAPWATCH_COLLECTOR_PROFILE_CACHE_H_
#define HEAPWATCH_COLLECTOR_PROFILE_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "collector/pprof.h"
#include "collector/profile_data.h"

namespace heapwatch::collector {

class ProfileCache {
 public:
  explicit ProfileCache(size_t max_entries = 4, size_t max_bytes = size_t{96} << 20,
                        double idle_seconds = 300)
      : max_entries_(max_entries), max_bytes_(max_bytes), idle_seconds_(idle_seconds) {}

  // `process`'s profile as of `now`; valid until the next call.
  const ProfileData& Get(const Process& process, SymbolService* symbols, double now);
  // The same as a gzipped pprof file (PprofEncoder: what did not change
  // since the last call is not compressed again).
  std::string Pprof(const Process& process, SymbolService* symbols, double now, SampleType default_type);
  // Drops profiles not asked for in idle_seconds, and any over the budget.
  void Expire(double now);
  size_t size() const { return entries_.size(); }
  size_t bytes() const {
    size_t total = 0;
    for (const Entry& e : entries_) total += e.bytes;
    return total;
  }

  struct Stats {
    uint64_t hits = 0;      // updated an existing profile
    uint64_t builds = 0;    // built one from nothing (new, evicted or modules changed)
    uint64_t oversize = 0;  // built for one request only: bigger than max_bytes
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Entry {
    uint32_t pid = 0;
    uint64_t start_time_ns = 0;
    double last_used = 0;
    std::unique_ptr<ProfileBuilder> builder;
    std::unique_ptr<PprofEncoder> pprof;
    size_t bytes = 0;
  };
  Entry& Find(const Process& process, SymbolService* symbols, double now);
  const ProfileData& Update(Entry& entry, const Process& process, double now);
  // Drops entries until the rest fit in max_bytes (oversize ones first),
  // but not `keep`'s.
  void Fit(const Process* keep);
  std::vector<Entry>::iterator Erase(std::vector<Entry>::iterator it);
  const size_t max_entries_;
  const size_t max_bytes_;
  const double idle_seconds_;
  std::vector<Entry> entries_;
  size_t dropped_bytes_ = 0;  // since the last malloc_trim
  Stats stats_;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_PROFILE_CACHE_H_
