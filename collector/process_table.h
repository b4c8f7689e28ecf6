// All process instances the collector knows, running and exited, capped.
//
// A process instance is (pid, start_time_ns from the hello): a reconnect of the
// same instance finds its existing record; an exec (same pid, new shim start)
// or a reused pid is a new instance, and the older one is marked exited.
// Not thread-safe: event-loop thread only.
#ifndef HEAPWATCH_COLLECTOR_PROCESS_TABLE_H_
#define HEAPWATCH_COLLECTOR_PROCESS_TABLE_H_

#include <memory>
#include <vector>

#include "collector/config.h"
#include "collector/process.h"

namespace heapwatch::collector {

class ProcessTable {
 public:
  explicit ProcessTable(const Limits& limits);

  // A connection said hello. Returns the process to feed (and marks it
  // attached), or nullptr when the table is full of live processes (counted).
  Process* Attach(uint32_t pid, uint32_t uid, const HelloMsg& hello, double now);
  void Detach(Process* process, double now);

  // The newest instance with this pid, or nullptr.
  Process* Find(uint32_t pid) const;
  // All instances, oldest first.
  const std::vector<std::unique_ptr<Process>>& processes() const { return processes_; }

  uint64_t evicted_processes() const { return evicted_; }
  uint64_t rejected_processes() const { return rejected_; }
  size_t total_stacks() const;
  size_t stack_budget_left() const { return stack_budget_; }
  size_t live_budget_left() const { return live_budget_; }

 private:
  bool MakeRoom();

  Limits limits_;
  size_t stack_budget_;
  size_t live_budget_;
  std::vector<std::unique_ptr<Process>> processes_;
  uint64_t evicted_ = 0;
  uint64_t rejected_ = 0;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_PROCESS_TABLE_H_
