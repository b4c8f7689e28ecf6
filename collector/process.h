// One profiled process instance as the collector sees it: its modules, unique
// stacks, live sampled allocations, cumulative allocation totals and history.
//
// The shim samples allocations with a Poisson process over bytes (mean R =
// sample_bytes). An allocation of s bytes is sampled with probability
// p(s) = 1 - exp(-s/R), so each sample stands for 1/p(s) allocations and s/p(s)
// bytes; summing those weights gives unbiased estimates of objects and bytes.
//
// Not thread-safe: owned and used by the collector's event-loop thread only.
// Every table is capped (Limits) and every eviction or rejection is counted.
#ifndef HEAPWATCH_COLLECTOR_PROCESS_H_
#define HEAPWATCH_COLLECTOR_PROCESS_H_

#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collector/config.h"
#include "collector/frame_decoder.h"
#include "collector/module_history.h"

namespace heapwatch::collector {

// Objects one sample of `size` bytes stands for, at mean sampling interval R.
double SampleWeight(uint64_t size, uint64_t sample_bytes);

// Estimated totals for one stack (unbiased; see the header comment).
struct StackStats {
  double alloc_objects = 0;
  double alloc_bytes = 0;
  double live_objects = 0;
  double live_bytes = 0;
  uint32_t live_samples = 0;
};

struct Stack {
  uint64_t wire_id = 0;
  uint32_t first_pc = 0;  // index into Process::stack_pcs()
  uint32_t depth = 0;     // 0 for the overflow stack
  uint64_t epoch = 0;     // the unload epoch it was captured in: names its pcs (FindModule)
  StackStats stats;
};

struct LiveSample {
  uint32_t stack = 0;  // index into stacks()
  uint64_t size = 0;
  uint64_t time_ns = 0;
  double weight = 0;   // objects this sample stands for
};

struct TimelinePoint {
  double time = 0;
  double heap_bytes = 0;
  std::optional<uint64_t> rss_bytes;
  std::optional<uint64_t> cgroup_bytes;
  std::optional<uint64_t> limit_bytes;
};

struct ProcessCounters {
  uint64_t events = 0;
  uint64_t unknown_frees = 0;     // frees of addresses we do not hold (normal after a resync)
  uint64_t unknown_stacks = 0;    // events naming a stack never sent (shim bug)
  uint64_t evicted_stacks = 0;    // stacks refused for the caps
  uint64_t evicted_samples = 0;   // live samples refused for the cap
  uint64_t resyncs = 0;
  uint64_t connections = 0;
  uint64_t history_thinned = 0;
};

class Process {
 public:
  // `stack_budget` is shared by all processes (Limits::max_total_stacks),
  // and so is `live_budget` (Limits::max_total_live_samples; null: none).
  Process(uint32_t pid, uint32_t uid, const HelloMsg& hello, const Limits& limits,
          size_t* stack_budget, double now, size_t* live_budget = nullptr);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // --- applying the shim's stream --------------------------------------
  void ResetModules();
  void AddModule(const ModuleMsg& msg);
  void AddStack(const StackMsg& msg);
  void ApplyEvents(const uint8_t* records, uint32_t count);
  void BeginResync();
  void EndResync();
  void SetShimStats(const wire::Stats& stats) { shim_stats_ = stats; }

  // --- lifecycle ---------------------------------------------------------
  void Attached(double now);
  void Detached(double now);
  void MarkExited(double now);
  void Touch(double now) { last_seen_ = now; }

  // Records a timeline point (heap estimate now plus what the poller read).
  void RecordPoint(double now, std::optional<uint64_t> rss, std::optional<uint64_t> cgroup_usage,
                   std::optional<uint64_t> limit);

  // --- reading -------------------------------------------------------------
  uint32_t pid() const { return pid_; }
  uint32_t uid() const { return uid_; }
  uint32_t ppid() const { return ppid_; }
  const std::string& exe() const { return exe_; }
  uint64_t start_time_ns() const { return start_time_ns_; }
  uint64_t sample_bytes() const { return sample_bytes_; }
  bool exited() const { return exited_; }
  int open_connections() const { return open_connections_; }
  double last_seen() const { return last_seen_; }
  double exited_at() const { return exited_at_; }

  double heap_bytes() const { return heap_bytes_ > 0 ? heap_bytes_ : 0; }
  double heap_objects() const { return heap_objects_ > 0 ? heap_objects_ : 0; }
  double alloc_bytes() const { return alloc_bytes_; }
  double alloc_objects() const { return alloc_objects_; }
  size_t live_samples() const { return live_.size(); }
  const boost::unordered_flat_map<uint64_t, LiveSample>& live() const { return live_; }

  const std::vector<Stack>& stacks() const { return stacks_; }
  // Program counters of stack s, innermost first.
  std::span<const uint64_t> StackPcs(const Stack& s) const {
    return {stack_pcs_.data() + s.first_pc, s.depth};
  }
  // Every module the process has had mapped, loaded now or not (see
  // ModuleHistory), sorted by start.
  const std::vector<ModuleInfo>& modules() const { return modules_.all(); }
  const ModuleHistory& module_history() const { return modules_; }
  // The module that held `pc` for a stack of `epoch` (Stack::epoch), or nullptr.
  const ModuleInfo* FindModule(uint64_t pc, uint64_t epoch) const { return modules_.Find(pc, epoch); }
  // Bumped whenever modules or stacks are added; lets caches notice change.
  uint64_t generation() const { return generation_; }
  // Bumped whenever the module map changes (reset, a module added or moved).
  uint64_t modules_generation() const { return modules_generation_; }

  const std::deque<TimelinePoint>& timeline() const { return timeline_; }
  const wire::Stats& shim_stats() const { return shim_stats_; }
  const ProcessCounters& counters() const { return counters_; }
  bool resyncing() const { return resyncing_; }

 private:
  uint32_t OverflowStack();
  void AddLive(uint64_t address, const LiveSample& sample);
  void RemoveLive(boost::unordered_flat_map<uint64_t, LiveSample>::iterator it);
  void ClearLive();

  const uint32_t pid_, uid_, ppid_;
  const std::string exe_;
  const uint64_t start_time_ns_;
  const uint64_t sample_bytes_;
  const Limits limits_;
  size_t* stack_budget_;
  size_t budget_taken_ = 0;
  size_t* live_budget_;

  bool exited_ = false;
  int open_connections_ = 0;
  double last_seen_ = 0;
  double exited_at_ = 0;
  bool resyncing_ = false;

  ModuleHistory modules_;
  std::vector<Stack> stacks_;
  std::vector<uint64_t> stack_pcs_;
  boost::unordered_flat_map<uint64_t, uint32_t> stack_index_;  // wire id -> index
  std::optional<uint32_t> overflow_stack_;
  static constexpr size_t kRememberedRefusedIds = 1024;
  bool forgot_refused_ids_ = false;  // refused stack ids beyond the index's bound
  boost::unordered_flat_map<uint64_t, LiveSample> live_;       // address -> sample

  double heap_bytes_ = 0, heap_objects_ = 0;
  double alloc_bytes_ = 0, alloc_objects_ = 0;
  uint64_t generation_ = 0;
  uint64_t modules_generation_ = 0;

  std::deque<TimelinePoint> timeline_;
  wire::Stats shim_stats_{};
  ProcessCounters counters_;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_PROCESS_H_
