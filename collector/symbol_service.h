// Symbolization for the collector, off the event loop: a worker thread
// resolves the program counters of newly seen stacks through the symbolizer,
// and readers (HTTP handlers on the loop thread) only Peek at its cache, so
// neither ingestion nor a response ever waits behind a slow file.
//
// Modules are opened through /proc/<pid>/root (the application's filesystem,
// seen through the pod's shared process namespace) and then as the path is,
// and trusted only if their build-id matches. Results are cached per build-id,
// so names resolved while a process ran stay available after it exits.
#ifndef HEAPWATCH_COLLECTOR_SYMBOL_SERVICE_H_
#define HEAPWATCH_COLLECTOR_SYMBOL_SERVICE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "collector/process.h"
#include "symbolizer/symbolizer.h"

namespace heapwatch::collector {

class SymbolService {
 public:
  explicit SymbolService(std::string proc_root = "/proc", symbolizer::Options options = {});
  ~SymbolService();
  SymbolService(const SymbolService&) = delete;
  SymbolService& operator=(const SymbolService&) = delete;

  // Queues the pcs of stacks this process gained since the last call.
  // Loop thread only; never blocks on symbolization.
  void Prefetch(const Process& process);

  // The cached answer for `vaddr` (LookupAddress) in `module`, or nullopt (not
  // resolved yet, or evicted). Never blocks on a file; thread-safe. Callers
  // looking up many addresses build the module reference and Roots() once.
  std::optional<symbolizer::Location> Peek(const symbolizer::ModuleRef& module,
                                           const std::vector<std::string>& roots, uint64_t vaddr) const {
    return symbolizer_.Peek(module, roots, vaddr);
  }
  // Where a process's modules are opened from: its own root, then as is.
  std::vector<std::string> Roots(uint32_t pid) const;
  // Queues pcs of one module (e.g. the misses of Peek) for the worker.
  void Request(const ModuleInfo& module, uint32_t pid, const std::vector<uint64_t>& pcs);

  // Waits until the queue is empty or the timeout passes; true if empty.
  bool WaitIdle(std::chrono::milliseconds timeout);

  symbolizer::Symbolizer::Stats stats() const { return symbolizer_.GetStats(); }
  // Batches the worker has finished: when it moves, Peek may know more.
  uint64_t completed_batches() const { return completed_.load(std::memory_order_acquire); }
  // Batches queued or being symbolized: 0 once the worker is idle.
  uint64_t pending_batches() const;

  // Return addresses point after the call; look up the call instruction.
  static uint64_t LookupAddress(const ModuleInfo& module, uint64_t pc) {
    return pc - 1 - module.load_bias;
  }

 private:
  struct Batch {
    symbolizer::ModuleRef module;
    std::vector<std::string> roots;
    std::vector<uint64_t> vaddrs;
  };
  void Enqueue(Batch batch);
  void Run();

  const std::string proc_root_;
  symbolizer::Symbolizer symbolizer_;
  // Stacks already queued, per process instance (pid, start time).
  std::map<std::pair<uint32_t, uint64_t>, size_t> prefetched_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<Batch> queue_;
  bool busy_ = false;
  bool stop_ = false;
  std::atomic<uint64_t> completed_{0};
  std::thread worker_;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_SYMBOL_SERVICE_H_
