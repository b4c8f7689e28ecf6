// The modules a process has had loaded, and when: so that a stack is named
// after the objects that were mapped when it was captured, not after whatever
// is mapped at those addresses now. A library dlclose'd and another dlopen'ed
// in its place would otherwise take over the first one's stacks (its leaked
// blocks above all), module and names.
//
// Time is counted in unload epochs. The shim keeps a process-wide counter
// that moves on every dlclose (preload/modules.h: address ranges are only
// reused after an unload), stamps each module map it sends with the counter's
// value when it read the map, and puts the counter's low bits into the id of
// every stack it captures (wire.h: Module::epoch, kStackEpochBits). Each
// mapping here keeps the epochs it is known to have held its range for,
// [first_epoch, last_epoch]: from the map that first listed it (or 0 for the
// process's first map: what was loaded before we looked) to the last map that
// listed it. A stack of epoch e is named after the mapping that covers its pc
// with e in that interval; none, and the pc has no module.
//
// The interval is conservative at both ends. A mapping first listed at epoch
// f may have been loaded a few epochs before f (dlopen, then another object's
// dlclose, before the shim's next map): its stacks of those epochs get no
// module rather than, perhaps, a wrong one. A stack captured after the last
// map (an object unloaded, the new map not sent yet) gets no module until
// that map arrives; the profile is rebuilt then (modules_generation).
//
// Shims that do not stamp their maps (Module::epoch 0) send opaque stack ids;
// for them each map is an epoch of its own and a stack belongs to the map
// that was current when it arrived.
//
// Bounded: mappings no longer loaded are kept up to `max_retired` (the oldest
// go first, counted in dropped()), the loaded ones up to kMaxLoaded per map.
// Not thread-safe: the collector's loop thread owns it (with its Process).
#ifndef HEAPWATCH_COLLECTOR_MODULE_HISTORY_H_
#define HEAPWATCH_COLLECTOR_MODULE_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace heapwatch::collector {

struct ModuleInfo {
  uint64_t load_bias = 0;
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t file_offset = 0;  // of the first executable segment
  std::string build_id;  // raw bytes
  std::string path;
  // The unload epochs this mapping held [start, end) for (see above). Those
  // not made by a ModuleHistory hold their range for ever.
  uint64_t first_epoch = 0;
  uint64_t last_epoch = UINT64_MAX;
};

class ModuleHistory {
 public:
  static constexpr size_t kDefaultMaxRetired = 256;
  static constexpr size_t kMaxLoaded = 8192;

  explicit ModuleHistory(size_t max_retired = kDefaultMaxRetired) : max_retired_(max_retired) {}

  // A new map follows (kModulesReset): what it does not list is unloaded.
  void BeginMap();
  // One module of the current map (kModule); `stamp` is its Module::epoch.
  // Returns false if it was refused (the map is over kMaxLoaded).
  bool Add(ModuleInfo module, uint32_t stamp);

  // The epoch of a stack with this wire id arriving now.
  uint64_t StackEpoch(uint64_t stack_id) const;

  // The epochs over which a lookup's answer stays the same.
  struct EpochRange {
    uint64_t first = 0;
    uint64_t last = UINT64_MAX;
    bool Contains(uint64_t epoch) const { return first <= epoch && epoch <= last; }
  };
  // The mapping that held `pc` for a stack of `epoch`, or nullptr; *same (if
  // given) gets the epochs around `epoch` for which the answer is the same.
  const ModuleInfo* Find(uint64_t pc, uint64_t epoch, EpochRange* same = nullptr) const;

  // Every mapping kept, loaded or not, sorted by start address. Pointers and
  // indices stay valid until the next BeginMap() or Add().
  const std::vector<ModuleInfo>& all() const { return modules_; }
  // Mappings in the latest map.
  size_t loaded() const { return loaded_; }
  // Epoch of the latest map.
  uint64_t epoch() const { return map_epoch_; }
  // Mappings no longer loaded that were forgotten for the cap, and modules
  // refused for kMaxLoaded.
  uint64_t dropped() const { return dropped_; }

 private:
  struct State {
    uint64_t max_end = 0;  // the greatest end of this mapping and those before it
    bool in_map = false;   // listed by the latest map
    bool in_previous = false;  // listed by the map before it (BeginMap)
  };
  void SetMapEpoch(uint32_t stamp);
  void DropOldestRetired(size_t count);
  void UpdateMaxEnd(size_t from);

  const size_t max_retired_;
  std::vector<ModuleInfo> modules_;  // sorted by (start, first_epoch)
  std::vector<State> state_;         // parallel to modules_
  size_t loaded_ = 0;
  uint64_t maps_ = 0;        // maps begun
  bool epoch_known_ = false;  // the latest map's epoch is set (by its first module)
  bool stamped_ = false;      // the shim stamps its maps (and its stack ids)
  uint64_t map_epoch_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_MODULE_HISTORY_H_
