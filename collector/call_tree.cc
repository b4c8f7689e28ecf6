#include "collector/call_tree.h"

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cmath>
#include <string>
#include <unordered_map>

namespace heapwatch::collector {
namespace {

bool IsSpace(SampleType t) { return t == SampleType::kInuseSpace || t == SampleType::kAllocSpace; }
bool IsInuse(SampleType t) { return t == SampleType::kInuseSpace || t == SampleType::kInuseObjects; }

// The tree is built one depth at a time, and only below nodes that will be
// shown: a node under the threshold is never expanded, because nothing under
// it can pass the threshold either (a child's value is part of its parent's).
// So the work is the number of (sample, depth) pairs that sit under shown
// nodes, not the size of the whole call tree: a 100k-stack profile has close
// to a million nodes, of which a few thousand are shown.
struct Node {
  uint32_t function = 0;  // index into Builder::functions_
  uint32_t parent = 0;
  double bytes[2] = {0, 0};  // [current, base]
  double objects[2] = {0, 0};
  double self_bytes[2] = {0, 0};
  double self_objects[2] = {0, 0};
  std::vector<uint32_t> children;  // in order of first appearance
};

// One sample on its way down the tree.
struct Walker {
  uint32_t path_begin, path_end;  // into Builder::paths_, outermost first
  uint32_t node;                  // where it is now
  int slot;
  double bytes, objects;
};

class Builder {
 public:
  explicit Builder(const CallTreeOptions& options) : options_(options) {
    nodes_.emplace_back();  // root
  }

  // Adds the samples of `data` as walkers, with their paths of function ids.
  void Add(const ProfileData& data, int slot) {
    const bool inuse = IsInuse(options_.type);
    std::vector<uint32_t> function_of = FunctionIds(data);
    walkers_.reserve(walkers_.size() + data.samples.size());
    size_t path_total = paths_.size();
    for (const auto& s : data.samples) {
      for (uint32_t loc : data.SampleLocations(s)) path_total += data.locations[loc].frame_count;
    }
    paths_.reserve(path_total);
    for (const auto& s : data.samples) {
      double bytes = inuse ? s.stats.live_bytes : s.stats.alloc_bytes;
      double objects = inuse ? s.stats.live_objects : s.stats.alloc_objects;
      if (bytes == 0 && objects == 0) continue;
      Walker w{static_cast<uint32_t>(paths_.size()), 0, 0, slot, bytes, objects};
      auto locs = data.SampleLocations(s);
      // Outermost first: locations run innermost first, and so do the inline
      // frames inside each location.
      for (auto it = locs.rbegin(); it != locs.rend(); ++it) {
        auto frames = data.LocationFrames(data.locations[*it]);
        for (auto f = frames.rbegin(); f != frames.rend(); ++f) paths_.push_back(function_of[*f]);
      }
      w.path_end = static_cast<uint32_t>(paths_.size());
      Accumulate(0, w);
      walkers_.push_back(w);
    }
  }

  nlohmann::json Build(bool diff) {
    diff_ = diff;
    total_ = Value(nodes_[0], 0);
    double base_total = Value(nodes_[0], 1);
    threshold_ = options_.min_share * std::max(std::abs(total_), std::abs(base_total));
    Grow();
    const bool space = IsSpace(options_.type);
    emitted_ = 0;
    nlohmann::json out = {{"type", SampleTypeName(options_.type)},
                          {"unit", space ? "bytes" : "objects"},
                          {"total", total_},
                          {"root", Emit(0)}};
    if (diff) out["base_total"] = base_total;
    out["nodes"] = emitted_;
    out["truncated"] = truncated_;
    return out;
  }

 private:
  // Maps each frame of `data` to a function id of this tree: a node's
  // identity in the flame graph is the function (and its module), not the
  // line, so one function's call sites merge as people expect. The first
  // profile's own ids serve as they are; a second (the diff's base) is
  // matched to them by name, one lookup per function.
  std::vector<uint32_t> FunctionIds(const ProfileData& data) {
    // A profile made by hand (tests) may not carry its ids: work them out.
    uint32_t count = data.function_count;
    std::vector<uint32_t> ids = data.frame_function.size() == data.frames.size()
                                    ? data.frame_function
                                    : FunctionIdsOf(data.frames, &count);
    if (functions_.empty()) {
      functions_.assign(count, nullptr);
      for (size_t i = 0; i < data.frames.size(); ++i) {
        if (!functions_[ids[i]]) functions_[ids[i]] = &data.frames[i];
      }
      return ids;
    }
    std::vector<uint32_t> out(data.frames.size());
    if (function_index_.empty()) {
      for (size_t i = 0; i < functions_.size(); ++i) {
        if (functions_[i]) function_index_.try_emplace(NameKey(*functions_[i]), static_cast<uint32_t>(i));
      }
    }
    std::vector<uint32_t> tree_id(count, UINT32_MAX);
    for (size_t i = 0; i < data.frames.size(); ++i) {
      uint32_t& id = tree_id[ids[i]];
      if (id == UINT32_MAX) {
        auto [it, inserted] = function_index_.try_emplace(NameKey(data.frames[i]),
                                                          static_cast<uint32_t>(functions_.size()));
        if (inserted) functions_.push_back(&data.frames[i]);
        id = it->second;
      }
      out[i] = id;
    }
    return out;
  }

  static std::string NameKey(const FrameInfo& f) {
    return f.function + '\x1f' + f.module + (f.inlined ? "\x1fi" : "") + (f.mismatch ? "\x1fm" : "");
  }

  void Accumulate(uint32_t node, const Walker& w) {
    nodes_[node].bytes[w.slot] += w.bytes;
    nodes_[node].objects[w.slot] += w.objects;
  }

  double Value(const Node& n, int slot) const {
    return IsSpace(options_.type) ? n.bytes[slot] : n.objects[slot];
  }

  // Whether a node is shown: its value (or, in a diff, its base or change)
  // reaches the threshold.
  bool Shown(const Node& n) const {
    double v = std::abs(Value(n, 0));
    if (diff_) v = std::max({v, std::abs(Value(n, 1)), std::abs(Value(n, 0) - Value(n, 1))});
    return v > 0 && v >= threshold_;
  }

  // Moves every walker one frame down per round; walkers whose path ends
  // count as their node's self value; nodes that are not shown are dropped
  // with their walkers.
  void Grow() {
    boost::unordered_flat_map<uint64_t, uint32_t> child_index;
    std::vector<Walker> next;
    next.reserve(walkers_.size());
    for (uint32_t depth = 0; !walkers_.empty(); ++depth) {
      child_index.clear();
      next.clear();
      const auto level_begin = static_cast<uint32_t>(nodes_.size());
      for (Walker& w : walkers_) {
        if (w.path_begin + depth == w.path_end) {
          nodes_[w.node].self_bytes[w.slot] += w.bytes;
          nodes_[w.node].self_objects[w.slot] += w.objects;
          continue;
        }
        uint32_t fn = paths_[w.path_begin + depth];
        uint64_t key = (uint64_t{w.node} << 32) | fn;
        auto [it, inserted] = child_index.try_emplace(key, static_cast<uint32_t>(nodes_.size()));
        if (inserted) {
          nodes_.emplace_back();
          nodes_.back().function = fn;
          nodes_.back().parent = w.node;
        }
        w.node = it->second;
        Accumulate(w.node, w);
        next.push_back(w);
      }
      // Keep the shown nodes of this depth (compacted), link them to their
      // parents, and drop the walkers below the others.
      std::vector<uint32_t> moved(nodes_.size() - level_begin, UINT32_MAX);
      uint32_t kept = level_begin;
      for (uint32_t i = level_begin; i < nodes_.size(); ++i) {
        if (!Shown(nodes_[i])) continue;
        moved[i - level_begin] = kept;
        if (kept != i) nodes_[kept] = std::move(nodes_[i]);
        nodes_[nodes_[kept].parent].children.push_back(kept);
        ++kept;
      }
      nodes_.resize(kept);
      walkers_.clear();
      for (Walker& w : next) {
        uint32_t to = moved[w.node - level_begin];
        if (to == UINT32_MAX) continue;
        w.node = to;
        walkers_.push_back(w);
      }
      if (nodes_.size() > options_.max_nodes * 4 + 1) {
        // Far more shown nodes than will be emitted (a min_share of 0 on a
        // huge profile): stop growing; Emit says the tree was truncated.
        truncated_ = true;
        break;
      }
    }
  }

  nlohmann::json Emit(uint32_t index) {
    ++emitted_;
    nlohmann::json j;
    if (index == 0) {
      j["name"] = "all";
    } else {
      const FrameInfo& f = *functions_[nodes_[index].function];
      j["name"] = f.function;
      j["file"] = f.file;
      j["line"] = f.line;
      j["module"] = f.module;
      j["inlined"] = f.inlined;
      if (f.unsymbolized) j["unsymbolized"] = true;
      if (f.mismatch) j["mismatch"] = true;
    }
    const Node& n = nodes_[index];
    double value = Value(n, 0);
    j["value"] = value;
    j["bytes"] = n.bytes[0];
    j["objects"] = n.objects[0];
    j["self"] = IsSpace(options_.type) ? n.self_bytes[0] : n.self_objects[0];
    if (diff_) {
      j["base"] = Value(n, 1);
      j["delta"] = value - Value(n, 1);
    }
    // Biggest first, as flame graphs conventionally sort by name; we sort by
    // weight so the eye lands on what matters. The UI may re-sort.
    std::vector<uint32_t> kids = n.children;
    std::stable_sort(kids.begin(), kids.end(),
                     [&](uint32_t a, uint32_t b) { return Value(nodes_[a], 0) > Value(nodes_[b], 0); });
    nlohmann::json children = nlohmann::json::array();
    for (uint32_t c : kids) {
      if (emitted_ >= options_.max_nodes) {
        truncated_ = true;
        break;
      }
      children.push_back(Emit(c));
    }
    j["children"] = std::move(children);
    return j;
  }

  const CallTreeOptions& options_;
  std::vector<Node> nodes_;
  std::vector<const FrameInfo*> functions_;  // tree function id -> a frame of it
  std::unordered_map<std::string, uint32_t> function_index_;  // by NameKey, for a diff
  std::vector<uint32_t> paths_;  // every walker's function ids, outermost first
  std::vector<Walker> walkers_;
  bool diff_ = false;
  double total_ = 0, threshold_ = 0;
  size_t emitted_ = 0;
  bool truncated_ = false;
};

}  // namespace

nlohmann::json BuildCallTree(const ProfileData& current, const ProfileData* base,
                             const CallTreeOptions& options) {
  Builder builder(options);
  builder.Add(current, 0);
  if (base) builder.Add(*base, 1);
  return builder.Build(base != nullptr);
}

}  // namespace heapwatch::collector
