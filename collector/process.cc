#include "collector/process.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>

namespace heapwatch::collector {

double SampleWeight(uint64_t size, uint64_t sample_bytes) {
  if (sample_bytes <= 1) return 1.0;  // every allocation is recorded
  if (size == 0) return 1.0;          // cannot be sampled by bytes; count it once
  // p = 1 - exp(-s/R); expm1 keeps precision when s << R (p ~ s/R).
  double p = -std::expm1(-static_cast<double>(size) / static_cast<double>(sample_bytes));
  return p > 0 ? 1.0 / p : 1.0;
}

Process::Process(uint32_t pid, uint32_t uid, const HelloMsg& hello, const Limits& limits,
                 size_t* stack_budget, double now, size_t* live_budget)
    : pid_(pid),
      uid_(uid),
      ppid_(hello.hello.ppid),
      exe_(hello.exe),
      start_time_ns_(hello.hello.start_time_ns),
      sample_bytes_(hello.hello.sample_bytes),
      limits_(limits),
      stack_budget_(stack_budget),
      live_budget_(live_budget),
      last_seen_(now) {}

Process::~Process() {
  // Give this process's stacks and live samples back to the shared budgets.
  *stack_budget_ += budget_taken_;
  if (live_budget_) *live_budget_ += live_.size();
}

void Process::ResetModules() {
  modules_.BeginMap();
  ++generation_;
  ++modules_generation_;
}

void Process::AddModule(const ModuleMsg& msg) {
  ModuleInfo m{msg.module.load_bias, msg.module.start, msg.module.end, msg.module.file_offset,
               std::string(msg.build_id), std::string(msg.path)};
  // The kernel names a mapped file that was unlinked or replaced "PATH
  // (deleted)". The file to look at is still PATH: the symbolizer opens
  // whatever is there now and trusts it only if its build-id matches.
  constexpr std::string_view kDeleted = " (deleted)";
  if (m.path.size() > kDeleted.size() && m.path.ends_with(kDeleted)) m.path.resize(m.path.size() - kDeleted.size());
  if (!modules_.Add(std::move(m), msg.module.epoch)) return;
  ++generation_;
  ++modules_generation_;
}

void Process::AddStack(const StackMsg& msg) {
  if (stack_index_.contains(msg.stack_id)) return;  // re-sent after a reconnect
  if (stacks_.size() >= limits_.max_stacks_per_process || *stack_budget_ == 0 ||
      stack_pcs_.size() + msg.depth > UINT32_MAX) {
    ++counters_.evicted_stacks;
    uint32_t overflow = OverflowStack();
    // Remembering a refused id lets its events land in the overflow stack
    // without counting as unknown; but a flood of distinct ids must not grow
    // the index without bound, so at most as many refused ids as kept stacks
    // (plus a few) are remembered. Events of the forgotten ones still land in
    // the overflow stack, through the unknown-stack path.
    if (stack_index_.size() < 2 * stacks_.size() + kRememberedRefusedIds) {
      stack_index_.emplace(msg.stack_id, overflow);
    } else {
      forgot_refused_ids_ = true;
    }
    return;
  }
  --*stack_budget_;
  ++budget_taken_;
  Stack s;
  s.wire_id = msg.stack_id;
  s.first_pc = static_cast<uint32_t>(stack_pcs_.size());
  s.depth = msg.depth;
  s.epoch = modules_.StackEpoch(msg.stack_id);
  for (uint32_t i = 0; i < msg.depth; ++i) stack_pcs_.push_back(msg.pc(i));
  stack_index_.emplace(msg.stack_id, static_cast<uint32_t>(stacks_.size()));
  stacks_.push_back(s);
  ++generation_;
}

uint32_t Process::OverflowStack() {
  // Samples of stacks over the caps still count, under one pseudo-stack, so
  // totals stay right when detail is lost.
  if (!overflow_stack_) {
    overflow_stack_ = static_cast<uint32_t>(stacks_.size());
    Stack s;
    s.first_pc = static_cast<uint32_t>(stack_pcs_.size());
    stacks_.push_back(s);
    ++generation_;
  }
  return *overflow_stack_;
}

void Process::AddLive(uint64_t address, const LiveSample& sample) {
  auto [it, inserted] = live_.try_emplace(address, sample);
  if (!inserted) {
    // The same address again: after a resync, or a free we never saw. The
    // newest record wins.
    RemoveLive(it);
    it = live_.try_emplace(address, sample).first;
  }
  if (live_budget_) --*live_budget_;
  StackStats& st = stacks_[sample.stack].stats;
  double bytes = sample.weight * static_cast<double>(sample.size);
  st.live_objects += sample.weight;
  st.live_bytes += bytes;
  ++st.live_samples;
  heap_objects_ += sample.weight;
  heap_bytes_ += bytes;
}

void Process::RemoveLive(boost::unordered_flat_map<uint64_t, LiveSample>::iterator it) {
  const LiveSample& s = it->second;
  StackStats& st = stacks_[s.stack].stats;
  double bytes = s.weight * static_cast<double>(s.size);
  st.live_objects -= s.weight;
  st.live_bytes -= bytes;
  --st.live_samples;
  if (st.live_samples == 0) st.live_objects = st.live_bytes = 0;  // no float residue
  heap_objects_ -= s.weight;
  heap_bytes_ -= bytes;
  live_.erase(it);
  if (live_budget_) ++*live_budget_;
  if (live_.empty()) heap_objects_ = heap_bytes_ = 0;
}

void Process::ClearLive() {
  if (live_budget_) *live_budget_ += live_.size();
  live_.clear();
}

void Process::ApplyEvents(const uint8_t* records, uint32_t count) {
  counters_.events += count;
  for (uint32_t i = 0; i < count; ++i) {
    wire::EventRecord e;
    std::memcpy(&e, records + i * sizeof(e), sizeof(e));
    if (e.kind == static_cast<uint32_t>(wire::EventKind::kFree)) {
      auto it = live_.find(e.address);
      if (it == live_.end()) {
        ++counters_.unknown_frees;
      } else {
        RemoveLive(it);
      }
      continue;
    }
    uint32_t stack;
    if (auto it = stack_index_.find(e.stack_id); it != stack_index_.end()) {
      stack = it->second;
    } else {
      // After ids were forgotten (see AddStack) this is expected, not a shim bug.
      if (!forgot_refused_ids_) ++counters_.unknown_stacks;
      stack = OverflowStack();
    }
    LiveSample sample{stack, e.size, e.time_ns, SampleWeight(e.size, sample_bytes_)};
    if (!resyncing_) {
      // A resync re-sends allocations already counted; only new ones add to
      // the cumulative totals.
      StackStats& st = stacks_[stack].stats;
      st.alloc_objects += sample.weight;
      st.alloc_bytes += sample.weight * static_cast<double>(e.size);
      alloc_objects_ += sample.weight;
      alloc_bytes_ += sample.weight * static_cast<double>(e.size);
    }
    if ((live_.size() >= limits_.max_live_samples_per_process || (live_budget_ && *live_budget_ == 0)) &&
        !live_.contains(e.address)) {
      ++counters_.evicted_samples;
      continue;
    }
    AddLive(e.address, sample);
  }
}

void Process::BeginResync() {
  // The shim re-sends its whole live table next: start from nothing.
  ClearLive();
  for (Stack& s : stacks_) {
    s.stats.live_objects = s.stats.live_bytes = 0;
    s.stats.live_samples = 0;
  }
  heap_bytes_ = heap_objects_ = 0;
  resyncing_ = true;
  ++counters_.resyncs;
}

void Process::EndResync() { resyncing_ = false; }

void Process::Attached(double now) {
  ++open_connections_;
  ++counters_.connections;
  exited_ = false;
  last_seen_ = now;
}

void Process::Detached(double now) {
  if (open_connections_ > 0) --open_connections_;
  last_seen_ = now;
  resyncing_ = false;
}

void Process::MarkExited(double now) {
  if (exited_) return;
  exited_ = true;
  exited_at_ = now;
}

void Process::RecordPoint(double now, std::optional<uint64_t> rss,
                          std::optional<uint64_t> cgroup_usage, std::optional<uint64_t> limit) {
  timeline_.push_back({now, heap_bytes(), rss, cgroup_usage, limit});
  if (timeline_.size() > limits_.max_history_points) {
    // Thin the older half to every other point: history stays bounded while
    // reaching back further at a coarser step.
    size_t half = timeline_.size() / 2;
    std::deque<TimelinePoint> thinned;
    for (size_t i = 0; i < half; i += 2) thinned.push_back(timeline_[i]);
    for (size_t i = half; i < timeline_.size(); ++i) thinned.push_back(timeline_[i]);
    timeline_.swap(thinned);
    ++counters_.history_thinned;
  }
}

}  // namespace heapwatch::collector
