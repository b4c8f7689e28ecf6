#include "collector/symbol_service.h"

#include <unordered_map>

namespace heapwatch::collector {

SymbolService::SymbolService(std::string proc_root, symbolizer::Options options)
    : proc_root_(std::move(proc_root)), symbolizer_(std::move(options)), worker_([this] { Run(); }) {}

SymbolService::~SymbolService() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  worker_.join();
}

std::vector<std::string> SymbolService::Roots(uint32_t pid) const {
  return {proc_root_ + "/" + std::to_string(pid) + "/root", ""};
}

void SymbolService::Prefetch(const Process& process) {
  auto key = std::make_pair(process.pid(), process.start_time_ns());
  size_t& done = prefetched_[key];
  const auto& stacks = process.stacks();
  if (done >= stacks.size()) return;
  // Group the new pcs by module, so each module is opened once per batch.
  std::unordered_map<const ModuleInfo*, std::vector<uint64_t>> by_module;
  for (size_t i = done; i < stacks.size(); ++i) {
    for (uint64_t pc : process.StackPcs(stacks[i])) {
      if (const ModuleInfo* m = process.FindModule(pc, stacks[i].epoch)) {
        by_module[m].push_back(LookupAddress(*m, pc));
      }
    }
  }
  done = stacks.size();
  for (auto& [module, vaddrs] : by_module) {
    Enqueue({{module->path, module->build_id}, Roots(process.pid()), std::move(vaddrs)});
  }
  if (prefetched_.size() > 4096) prefetched_.clear();  // bounded; worst case re-queues
}

void SymbolService::Request(const ModuleInfo& module, uint32_t pid, const std::vector<uint64_t>& pcs) {
  if (pcs.empty()) return;
  Batch batch{{module.path, module.build_id}, Roots(pid), {}};
  batch.vaddrs.reserve(pcs.size());
  for (uint64_t pc : pcs) batch.vaddrs.push_back(LookupAddress(module, pc));
  Enqueue(std::move(batch));
}

void SymbolService::Enqueue(Batch batch) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Bounded: a flood of unknown addresses sheds work rather than memory.
    if (queue_.size() >= 100000) return;
    queue_.push_back(std::move(batch));
  }
  work_cv_.notify_one();
}

bool SymbolService::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
}

uint64_t SymbolService::pending_batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size() + (busy_ ? 1 : 0);
}

void SymbolService::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    symbolizer_.SymbolizeMany(batch.module, batch.roots, batch.vaddrs);
    completed_.fetch_add(1, std::memory_order_release);
    lock.lock();
    busy_ = false;
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

}  // namespace heapwatch::collector
