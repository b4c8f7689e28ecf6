#include "collector/process_table.h"

#include <algorithm>

namespace heapwatch::collector {

ProcessTable::ProcessTable(const Limits& limits)
    : limits_(limits), stack_budget_(limits.max_total_stacks), live_budget_(limits.max_total_live_samples) {}

Process* ProcessTable::Attach(uint32_t pid, uint32_t uid, const HelloMsg& hello, double now) {
  for (auto& p : processes_) {
    if (p->pid() != pid) continue;
    if (p->start_time_ns() == hello.hello.start_time_ns) {
      p->Attached(now);
      return p.get();
    }
    // Same pid, another shim start: the old instance exec'd or died.
    if (p->open_connections() == 0) p->MarkExited(now);
  }
  if (processes_.size() >= limits_.max_processes && !MakeRoom()) {
    ++rejected_;
    return nullptr;
  }
  processes_.push_back(std::make_unique<Process>(pid, uid, hello, limits_, &stack_budget_, now, &live_budget_));
  processes_.back()->Attached(now);
  return processes_.back().get();
}

bool ProcessTable::MakeRoom() {
  // Evict the exited, detached process that exited longest ago.
  auto victim = processes_.end();
  for (auto it = processes_.begin(); it != processes_.end(); ++it) {
    if (!(*it)->exited() || (*it)->open_connections() > 0) continue;
    if (victim == processes_.end() || (*it)->exited_at() < (*victim)->exited_at()) victim = it;
  }
  if (victim == processes_.end()) return false;
  processes_.erase(victim);
  ++evicted_;
  return true;
}

void ProcessTable::Detach(Process* process, double now) { process->Detached(now); }

Process* ProcessTable::Find(uint32_t pid) const {
  for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) {
    if ((*it)->pid() == pid) return it->get();
  }
  return nullptr;
}

size_t ProcessTable::total_stacks() const { return limits_.max_total_stacks - stack_budget_; }

}  // namespace heapwatch::collector
