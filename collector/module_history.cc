#include "collector/module_history.h"

#include <algorithm>
#include <utility>

#include "heapwatch/wire.h"

namespace heapwatch::collector {

namespace {

constexpr uint64_t kStampMask = wire::kEpochStamped - 1;  // the stamp's epoch bits

bool SameMapping(const ModuleInfo& a, const ModuleInfo& b) {
  return a.start == b.start && a.end == b.end && a.load_bias == b.load_bias &&
         a.file_offset == b.file_offset && a.build_id == b.build_id && a.path == b.path;
}

}  // namespace

void ModuleHistory::BeginMap() {
  // The map before this one is complete: what it did not list is retired,
  // and the retired beyond the cap go, those unloaded longest ago first.
  size_t retired = modules_.size() - loaded_;
  if (retired > max_retired_) DropOldestRetired(retired - max_retired_);
  for (State& s : state_) {
    s.in_previous = s.in_map;
    s.in_map = false;
  }
  loaded_ = 0;
  ++maps_;
  epoch_known_ = false;
}

void ModuleHistory::SetMapEpoch(uint32_t stamp) {
  epoch_known_ = true;
  if (stamp & wire::kEpochStamped) {
    // The stamp holds the epoch's low bits; epochs only grow.
    map_epoch_ += (stamp - map_epoch_) & kStampMask;
    stamped_ = true;
  } else if (!stamped_ && maps_ > 1) {
    ++map_epoch_;  // an unstamped map is an epoch of its own
  }
}

bool ModuleHistory::Add(ModuleInfo module, uint32_t stamp) {
  if (maps_ == 0) BeginMap();  // a module before any reset opens the first map
  if (!epoch_known_) SetMapEpoch(stamp);
  auto by_start = [](const ModuleInfo& m, uint64_t start) { return m.start < start; };
  size_t i = std::lower_bound(modules_.begin(), modules_.end(), module.start, by_start) - modules_.begin();
  for (; i < modules_.size() && modules_[i].start == module.start; ++i) {
    State& s = state_[i];
    if ((s.in_map || s.in_previous) && SameMapping(modules_[i], module)) {
      // Still loaded (or listed twice): the same mapping, for longer.
      if (!s.in_map) ++loaded_;
      s.in_map = true;
      modules_[i].last_epoch = map_epoch_;
      return true;
    }
  }
  if (loaded_ >= kMaxLoaded) {
    ++dropped_;
    return false;
  }
  // New. In the first map it stands for everything loaded before we looked.
  module.first_epoch = maps_ == 1 ? 0 : map_epoch_;
  module.last_epoch = map_epoch_;
  auto at = std::upper_bound(modules_.begin(), modules_.end(), module, [](const ModuleInfo& a, const ModuleInfo& b) {
    return a.start != b.start ? a.start < b.start : a.first_epoch < b.first_epoch;
  });
  size_t pos = static_cast<size_t>(at - modules_.begin());
  modules_.insert(at, std::move(module));
  state_.insert(state_.begin() + static_cast<ptrdiff_t>(pos), State{0, true, false});
  ++loaded_;
  UpdateMaxEnd(pos);
  return true;
}

void ModuleHistory::DropOldestRetired(size_t count) {
  std::vector<std::pair<uint64_t, size_t>> retired;  // (last epoch, index)
  for (size_t i = 0; i < modules_.size(); ++i) {
    if (!state_[i].in_map) retired.emplace_back(modules_[i].last_epoch, i);
  }
  count = std::min(count, retired.size());
  std::nth_element(retired.begin(), retired.begin() + static_cast<ptrdiff_t>(count), retired.end());
  std::vector<bool> drop(modules_.size(), false);
  for (size_t k = 0; k < count; ++k) drop[retired[k].second] = true;
  size_t kept = 0;
  for (size_t i = 0; i < modules_.size(); ++i) {
    if (drop[i]) continue;
    if (kept != i) {
      modules_[kept] = std::move(modules_[i]);
      state_[kept] = state_[i];
    }
    ++kept;
  }
  modules_.resize(kept);
  state_.resize(kept);
  dropped_ += count;
  UpdateMaxEnd(0);
}

void ModuleHistory::UpdateMaxEnd(size_t from) {
  for (size_t i = from; i < modules_.size(); ++i) {
    uint64_t before = i > 0 ? state_[i - 1].max_end : 0;
    state_[i].max_end = std::max(before, modules_[i].end);
  }
}

uint64_t ModuleHistory::StackEpoch(uint64_t stack_id) const {
  if (!stamped_) return map_epoch_;  // opaque ids: the map current on arrival
  // The id holds the epoch's low bits. A stack arrives close to the map of
  // its epoch: a little after it, or a little before (captured after an
  // unload whose map the shim had not sent yet).
  constexpr uint64_t kSpan = uint64_t{1} << wire::kStackEpochBits;
  uint64_t low = stack_id >> (64 - wire::kStackEpochBits);
  uint64_t ahead = (low - map_epoch_) & (kSpan - 1);
  uint64_t behind = kSpan - ahead;
  if (ahead < kSpan / 2 || behind > map_epoch_) return map_epoch_ + ahead;
  return map_epoch_ - behind;
}

const ModuleInfo* ModuleHistory::Find(uint64_t pc, uint64_t epoch, EpochRange* same) const {
  // Mappings are sorted by start, and max_end bounds the ends of all those
  // before: walk back from the last one starting at or below pc while any
  // of them can still reach it. One step when ranges were never reused.
  size_t i = std::upper_bound(modules_.begin(), modules_.end(), pc,
                              [](uint64_t v, const ModuleInfo& m) { return v < m.start; }) -
             modules_.begin();
  const ModuleInfo* found = nullptr;
  EpochRange range;
  while (i-- > 0 && state_[i].max_end > pc) {
    const ModuleInfo& m = modules_[i];
    if (pc >= m.end) continue;
    // m covers pc: the answer can only change where m's interval starts or ends.
    if (epoch < m.first_epoch) {
      range.last = std::min(range.last, m.first_epoch - 1);
    } else if (epoch > m.last_epoch) {
      range.first = std::max(range.first, m.last_epoch + 1);
    } else {
      range.first = std::max(range.first, m.first_epoch);
      range.last = std::min(range.last, m.last_epoch);
      // Two mappings of one range in one epoch: an unload the shim did not
      // see (see wire.h). The one loaded later wins.
      if (!found || m.first_epoch > found->first_epoch) found = &m;
    }
  }
  if (same) *same = range;
  return found;
}

}  // namespace heapwatch::collector
