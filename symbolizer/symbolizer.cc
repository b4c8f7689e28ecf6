#include "symbolizer/symbolizer.h"

#include <atomic>
#include <mutex>
#include <string_view>
#include <utility>

#include "symbolizer/elf_file.h"
#include "symbolizer/elf_module.h"
#include "symbolizer/lru_cache.h"

namespace heapwatch::symbolizer {
namespace {

// A module's identity: its build-id when it has one (the same build-id is the
// same file, whatever the path or root), else the paths it would be opened by.
std::string ModuleKey(const ModuleRef& module, const std::vector<std::string>& roots) {
  if (!module.build_id.empty()) return "b:" + module.build_id;
  std::string key = "p:";
  for (const std::string& root : roots) {
    key += root;
    key += module.path;
    key.push_back('\0');
  }
  return key;
}

// Failures depend on where we looked, not only on what we looked for.
std::string FailureKey(const std::string& module_key, const ModuleRef& module,
                       const std::vector<std::string>& roots) {
  std::string key = module_key;
  key.push_back('\0');
  key += module.path;
  for (const std::string& root : roots) {
    key.push_back('\0');
    key += root;
  }
  return key;
}

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// The address cache is keyed by a 64-bit hash of the module key rather than
// the key itself, so an entry costs no string allocation. Build-ids are
// already hashes; two different modules colliding in 64 bits is about as
// likely as two colliding in build-id, which would defeat any symbolizer.
struct AddressKey {
  uint64_t module;
  uint64_t vaddr;
  bool operator==(const AddressKey&) const = default;
};
struct AddressKeyHash {
  size_t operator()(const AddressKey& key) const {
    uint64_t h = key.module ^ (key.vaddr * 0x9e3779b97f4a7c15ull);
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

// Approximate heap bytes of a cached Location, for the byte bound.
size_t LocationCost(const Location& location) {
  constexpr size_t kNodeOverhead = 96;  // list node + hash node + key
  size_t cost = sizeof(Location) + kNodeOverhead;
  for (const SourceFrame& frame : location.frames) {
    cost += sizeof(SourceFrame);
    if (frame.function.capacity() > 15) cost += frame.function.capacity() + 1;
    if (frame.file.capacity() > 15) cost += frame.file.capacity() + 1;
  }
  return cost;
}

bool Cacheable(Status status) { return status == Status::kOk || status == Status::kNoSymbol; }

}  // namespace

const char* StatusName(Status status) {
  switch (status) {
    case Status::kOk: return "ok";
    case Status::kNoSymbol: return "no_symbol";
    case Status::kNoFile: return "no_file";
    case Status::kBuildIdMismatch: return "build_id_mismatch";
    case Status::kBadElf: return "bad_elf";
  }
  return "unknown";
}

class Symbolizer::Impl {
 public:
  explicit Impl(Options options)
      : options_(std::move(options)),
        addresses_(options_.max_cached_addresses, options_.max_cached_address_bytes),
        modules_(options_.max_cached_modules, 0),
        failures_(options_.max_cached_modules, 0) {}

  std::vector<Location> SymbolizeMany(const ModuleRef& module,
                                      const std::vector<std::string>& roots,
                                      const std::vector<uint64_t>& vaddrs);
  std::optional<Location> Peek(const ModuleRef& module, const std::vector<std::string>& roots,
                               uint64_t vaddr) const;
  std::string DescribeModule(const ModuleRef& module, const std::vector<std::string>& roots);
  Stats GetStats() const;

 private:
  // One module's slot in the module cache. The first caller to take `mu`
  // opens the module; later callers wait for it on `mu`, not on the global
  // lock, so a slow file stalls only lookups in that module.
  struct ModuleSlot {
    std::mutex mu;
    bool attempted = false;            // guarded by mu
    Status status = Status::kNoFile;   // result of the open; guarded by mu
    std::string error;                 // guarded by mu
    std::unique_ptr<ElfModule> module;  // guarded by mu
  };
  struct Failure {
    Status status;
    std::string error;
    std::chrono::steady_clock::time_point retry_at;
  };

  // Returns the module's slot with its lock held (`lock`), opened; or null
  // with *status/*error set when the module is unavailable.
  std::shared_ptr<ModuleSlot> AcquireModule(const ModuleRef& module,
                                            const std::vector<std::string>& roots,
                                            const std::string& key,
                                            std::unique_lock<std::mutex>* lock, Status* status,
                                            std::string* error);
  void OpenLocked(const ModuleRef& module, const std::vector<std::string>& roots,
                  ModuleSlot* slot);

  const Options options_;
  mutable std::mutex mu_;  // guards the three caches
  mutable LruCache<AddressKey, Location, AddressKeyHash> addresses_;
  mutable LruCache<std::string, std::shared_ptr<ModuleSlot>> modules_;
  mutable LruCache<std::string, Failure> failures_;

  std::atomic<uint64_t> lookups_{0};
  mutable std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> files_opened_{0};
  std::atomic<uint64_t> open_failures_{0};
  std::atomic<uint64_t> mismatches_{0};
  std::atomic<uint64_t> bad_elf_{0};
  std::atomic<uint64_t> debug_files_opened_{0};
};

void Symbolizer::Impl::OpenLocked(const ModuleRef& module, const std::vector<std::string>& roots,
                                  ModuleSlot* slot) {
  // Try every root: the build-id decides which file is right, and the first
  // root (the process's own filesystem) may hold a newer binary.
  bool saw_mismatch = false;
  bool saw_bad_elf = false;
  std::string errors;
  for (const std::string& root : roots) {
    ElfFile file;
    std::string error;
    ElfOpenResult result = OpenElfFile(root, module.path, &file, &error);
    if (result == ElfOpenResult::kBadElf) {
      saw_bad_elf = true;
      bad_elf_.fetch_add(1, std::memory_order_relaxed);
    }
    if (result != ElfOpenResult::kOk) {
      errors += root + module.path + ": " + error + "; ";
      continue;
    }
    if (!module.build_id.empty() && file.build_id != module.build_id) {
      saw_mismatch = true;
      errors += file.path + ": build-id " + HexEncode(file.build_id) + " != " +
                HexEncode(module.build_id) + "; ";
      continue;
    }
    std::string path = file.path;
    std::unique_ptr<ElfModule> opened =
        ElfModule::Create(std::move(file), root, module.path, options_.debug_dirs, &error);
    if (opened == nullptr) {
      saw_bad_elf = true;
      bad_elf_.fetch_add(1, std::memory_order_relaxed);
      errors += path + ": " + error + "; ";
      continue;
    }
    files_opened_.fetch_add(1, std::memory_order_relaxed);
    slot->module = std::move(opened);
    slot->status = Status::kOk;
    slot->error.clear();
    return;
  }
  if (saw_mismatch) {
    slot->status = Status::kBuildIdMismatch;
    mismatches_.fetch_add(1, std::memory_order_relaxed);
  } else {
    slot->status = saw_bad_elf ? Status::kBadElf : Status::kNoFile;
    open_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  slot->error = roots.empty() ? "no roots given" : errors;
}

std::shared_ptr<Symbolizer::Impl::ModuleSlot> Symbolizer::Impl::AcquireModule(
    const ModuleRef& module, const std::vector<std::string>& roots, const std::string& key,
    std::unique_lock<std::mutex>* lock, Status* status, std::string* error) {
  const std::string failure_key = FailureKey(key, module, roots);
  std::shared_ptr<ModuleSlot> slot;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (std::shared_ptr<ModuleSlot>* found = modules_.Find(key); found != nullptr) {
      slot = *found;
    } else {
      if (Failure* failure = failures_.Find(failure_key); failure != nullptr) {
        if (std::chrono::steady_clock::now() < failure->retry_at) {
          *status = failure->status;
          *error = failure->error;
          return nullptr;
        }
        // Expired: retry below. The entry stays (Peek reports it) until the
        // retry succeeds or fails afresh.
      }
      slot = std::make_shared<ModuleSlot>();
      modules_.Put(key, slot, 0);
    }
  }
  std::unique_lock<std::mutex> slot_lock(slot->mu);
  if (!slot->attempted) {
    slot->attempted = true;
    OpenLocked(module, roots, slot.get());
    if (slot->status == Status::kOk) {
      std::lock_guard<std::mutex> guard(mu_);
      failures_.Erase(failure_key);
    } else {
      std::lock_guard<std::mutex> guard(mu_);
      if (std::shared_ptr<ModuleSlot>* found = modules_.Find(key);
          found != nullptr && *found == slot) {
        modules_.Erase(key);
      }
      failures_.Put(failure_key,
                    Failure{slot->status, slot->error,
                            std::chrono::steady_clock::now() + options_.retry_failed_after},
                    0);
    }
  }
  if (slot->status != Status::kOk) {
    *status = slot->status;
    *error = slot->error;
    return nullptr;
  }
  *lock = std::move(slot_lock);
  return slot;
}

std::vector<Location> Symbolizer::Impl::SymbolizeMany(const ModuleRef& module,
                                                      const std::vector<std::string>& roots,
                                                      const std::vector<uint64_t>& vaddrs) {
  lookups_.fetch_add(vaddrs.size(), std::memory_order_relaxed);
  const std::string key = ModuleKey(module, roots);
  const uint64_t module_hash = Fnv1a64(key);
  std::vector<Location> results(vaddrs.size());
  std::vector<size_t> misses;
  {
    std::lock_guard<std::mutex> guard(mu_);
    for (size_t i = 0; i < vaddrs.size(); ++i) {
      if (Location* cached = addresses_.Find(AddressKey{module_hash, vaddrs[i]})) {
        results[i] = *cached;
      } else {
        misses.push_back(i);
      }
    }
  }
  cache_hits_.fetch_add(vaddrs.size() - misses.size(), std::memory_order_relaxed);
  if (misses.empty()) return results;

  std::unique_lock<std::mutex> slot_lock;
  Status status = Status::kNoFile;
  std::string error;
  std::shared_ptr<ModuleSlot> slot =
      AcquireModule(module, roots, key, &slot_lock, &status, &error);
  if (slot == nullptr) {
    for (size_t i : misses) results[i] = Location{status, {}};
    return results;
  }
  // libdwfl looks for separate debug info lazily, during a lookup.
  const int debug_files_before = slot->module->debug_files_opened();
  for (size_t i : misses) results[i] = slot->module->Lookup(vaddrs[i]);
  const int debug_files_opened = slot->module->debug_files_opened() - debug_files_before;
  slot_lock.unlock();
  if (debug_files_opened > 0) {
    debug_files_opened_.fetch_add(debug_files_opened, std::memory_order_relaxed);
  }

  std::lock_guard<std::mutex> guard(mu_);
  for (size_t i : misses) {
    if (Cacheable(results[i].status)) {
      addresses_.Put(AddressKey{module_hash, vaddrs[i]}, results[i], LocationCost(results[i]));
    }
  }
  return results;
}

std::optional<Location> Symbolizer::Impl::Peek(const ModuleRef& module,
                                               const std::vector<std::string>& roots,
                                               uint64_t vaddr) const {
  const uint64_t module_hash = Fnv1a64(ModuleKey(module, roots));
  std::lock_guard<std::mutex> guard(mu_);  // held only for map operations, never I/O
  if (Location* cached = addresses_.Find(AddressKey{module_hash, vaddr})) {
    cache_hits_.fetch_add(1, std::memory_order_relaxed);
    return *cached;
  }
  // A module known to be unavailable (mismatch, missing, bad) gives that
  // status for every address, so callers can mark the frame.
  const std::string key = ModuleKey(module, roots);
  if (modules_.Find(key) == nullptr) {
    if (Failure* failure = failures_.Find(FailureKey(key, module, roots)); failure != nullptr) {
      return Location{failure->status, {}};
    }
  }
  return std::nullopt;
}

std::string Symbolizer::Impl::DescribeModule(const ModuleRef& module,
                                             const std::vector<std::string>& roots) {
  std::unique_lock<std::mutex> slot_lock;
  Status status = Status::kNoFile;
  std::string error;
  std::shared_ptr<ModuleSlot> slot =
      AcquireModule(module, roots, ModuleKey(module, roots), &slot_lock, &status, &error);
  if (slot == nullptr) return std::string(StatusName(status)) + ": " + error;
  const ElfModule& opened = *slot->module;
  std::string text = "file " + opened.path();
  text += opened.build_id().empty() ? " (no build-id)" : " build-id " + HexEncode(opened.build_id());
  if (!opened.debug_file().empty()) text += ", debug info from " + opened.debug_file();
  return text;
}

Symbolizer::Stats Symbolizer::Impl::GetStats() const {
  Stats stats{};
  stats.lookups = lookups_.load(std::memory_order_relaxed);
  stats.cache_hits = cache_hits_.load(std::memory_order_relaxed);
  stats.files_opened = files_opened_.load(std::memory_order_relaxed);
  stats.open_failures = open_failures_.load(std::memory_order_relaxed);
  stats.mismatches = mismatches_.load(std::memory_order_relaxed);
  stats.bad_elf = bad_elf_.load(std::memory_order_relaxed);
  stats.debug_files_opened = debug_files_opened_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> guard(mu_);
  stats.address_evictions = addresses_.evictions();
  stats.module_evictions = modules_.evictions();
  stats.cached_addresses = addresses_.size();
  stats.cached_address_bytes = addresses_.cost();
  stats.cached_modules = modules_.size();
  return stats;
}

Symbolizer::Symbolizer(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Symbolizer::~Symbolizer() = default;

Location Symbolizer::Symbolize(const ModuleRef& module, const std::vector<std::string>& roots,
                               uint64_t vaddr) {
  return std::move(impl_->SymbolizeMany(module, roots, {vaddr})[0]);
}

std::vector<Location> Symbolizer::SymbolizeMany(const ModuleRef& module,
                                                const std::vector<std::string>& roots,
                                                const std::vector<uint64_t>& vaddrs) {
  return impl_->SymbolizeMany(module, roots, vaddrs);
}

std::optional<Location> Symbolizer::Peek(const ModuleRef& module,
                                         const std::vector<std::string>& roots,
                                         uint64_t vaddr) const {
  return impl_->Peek(module, roots, vaddr);
}

std::string Symbolizer::DescribeModule(const ModuleRef& module,
                                       const std::vector<std::string>& roots) {
  return impl_->DescribeModule(module, roots);
}

Symbolizer::Stats Symbolizer::GetStats() const { return impl_->GetStats(); }

}  // namespace heapwatch::symbolizer
