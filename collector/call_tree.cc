#include "collector/call_tree.h"

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cmath>
#include <unordered_map>

namespace heapwatch::collector {
namespace {

bool IsSpace(SampleType t) { return t == SampleType::kInuseSpace || t == SampleType::kAllocSpace; }
bool IsInuse(SampleType t) { return t == SampleType::kInuseSpace || t == SampleType::kInuseObjects; }

struct Node {
  uint32_t function = 0;  // index into Builder::functions_
  double bytes[2] = {0, 0};    // [current, base]
  double objects[2] = {0, 0};
  double self_bytes[2] = {0, 0};
  double self_objects[2] = {0, 0};
  // Children as a linked list of node indexes (no allocation per node: a
  // 100k-stack profile has close to a million nodes).
  uint32_t first_child = UINT32_MAX;
  uint32_t next_sibling = UINT32_MAX;
};

// A node's identity in the flame graph: the function (and its module), not
// the line, so one function's call sites merge as people expect.
struct FunctionKey {
  const FrameInfo* frame;
};

class Builder {
 public:
  explicit Builder(const CallTreeOptions& options) : options_(options) {
    nodes_.emplace_back();  // root
    functions_.push_back(nullptr);
  }

  void Add(const ProfileData& data, int slot) {
    const bool inuse = IsInuse(options_.type);
    frame_function_.assign(data.frames.size(), kUnknown);
    nodes_.reserve(nodes_.size() + data.samples.size() * 2);
    child_index_.reserve(child_index_.size() + data.samples.size() * 2);
    std::vector<uint32_t> path;
    for (const auto& s : data.samples) {
      double bytes = inuse ? s.stats.live_bytes : s.stats.alloc_bytes;
      double objects = inuse ? s.stats.live_objects : s.stats.alloc_objects;
      if (bytes == 0 && objects == 0) continue;
      path.clear();
      auto locs = data.SampleLocations(s);
      // Outermost first: locations run innermost first, and so do the inline
      // frames inside each location.
      for (auto it = locs.rbegin(); it != locs.rend(); ++it) {
        auto frames = data.LocationFrames(data.locations[*it]);
        for (auto f = frames.rbegin(); f != frames.rend(); ++f) path.push_back(FrameFunction(data, *f));
      }
      uint32_t node = 0;
      Accumulate(node, slot, bytes, objects);
      for (uint32_t fn : path) {
        node = Child(node, fn);
        Accumulate(node, slot, bytes, objects);
      }
      nodes_[node].self_bytes[slot] += bytes;
      nodes_[node].self_objects[slot] += objects;
    }
  }

  nlohmann::json ToJson(bool diff) {
    const bool space = IsSpace(options_.type);
    total_ = Value(nodes_[0], 0);
    double base_total = Value(nodes_[0], 1);
    threshold_ = options_.min_share * std::max(std::abs(total_), std::abs(base_total));
    emitted_ = 0;
    nlohmann::json out = {{"type", SampleTypeName(options_.type)},
                          {"unit", space ? "bytes" : "objects"},
                          {"total", total_},
                          {"root", Emit(0, diff)}};
    if (diff) out["base_total"] = base_total;
    out["nodes"] = emitted_;
    out["truncated"] = truncated_;
    return out;
  }

 private:
  static constexpr uint32_t kUnknown = UINT32_MAX;

  // FunctionId of an interned frame of `data`, computed once per frame: a
  // profile names the same few frames millions of times (every stack through
  // main), and building the key string each time dominated at 100k stacks.
  uint32_t FrameFunction(const ProfileData& data, uint32_t frame) {
    uint32_t& id = frame_function_[frame];
    if (id == kUnknown) id = FunctionId(data.frames[frame]);
    return id;
  }

  uint32_t FunctionId(const FrameInfo& f) {
    std::string key = f.function + '\x1f' + f.module + (f.inlined ? "\x1fi" : "");
    auto [it, inserted] = function_index_.try_emplace(std::move(key), static_cast<uint32_t>(functions_.size()));
    if (inserted) functions_.push_back(&f);
    return it->second;
  }

  uint32_t Child(uint32_t parent, uint32_t fn) {
    uint64_t key = (uint64_t{parent} << 32) | fn;
    auto [it, inserted] = child_index_.try_emplace(key, static_cast<uint32_t>(nodes_.size()));
    if (inserted) {
      nodes_.emplace_back();
      nodes_.back().function = fn;
      nodes_.back().next_sibling = nodes_[parent].first_child;
      nodes_[parent].first_child = it->second;
    }
    return it->second;
  }

  void Accumulate(uint32_t node, int slot, double bytes, double objects) {
    nodes_[node].bytes[slot] += bytes;
    nodes_[node].objects[slot] += objects;
  }

  double Value(const Node& n, int slot) const {
    return IsSpace(options_.type) ? n.bytes[slot] : n.objects[slot];
  }

  nlohmann::json Emit(uint32_t index, bool diff) {
    const Node& n = nodes_[index];
    ++emitted_;
    nlohmann::json j;
    if (index == 0) {
      j["name"] = "all";
    } else {
      const FrameInfo& f = *functions_[n.function];
      j["name"] = f.function;
      j["file"] = f.file;
      j["line"] = f.line;
      j["module"] = f.module;
      j["inlined"] = f.inlined;
      if (f.unsymbolized) j["unsymbolized"] = true;
      if (f.mismatch) j["mismatch"] = true;
    }
    double value = Value(n, 0);
    j["value"] = value;
    j["bytes"] = n.bytes[0];
    j["objects"] = n.objects[0];
    j["self"] = IsSpace(options_.type) ? n.self_bytes[0] : n.self_objects[0];
    if (diff) {
      j["base"] = Value(n, 1);
      j["delta"] = value - Value(n, 1);
    }
    // Biggest first, as flame graphs conventionally sort by name; we sort by
    // weight so the eye lands on what matters. The UI may re-sort.
    std::vector<uint32_t> kids;
    for (uint32_t c = n.first_child; c != UINT32_MAX; c = nodes_[c].next_sibling) {
      const Node& child = nodes_[c];
      double v = std::max(std::abs(Value(child, 0)), diff ? std::abs(Value(child, 0) - Value(child, 1)) : 0.0);
      if (diff) v = std::max(v, std::abs(Value(child, 1)));
      if (v > 0 && v >= threshold_) kids.push_back(c);
    }
    std::reverse(kids.begin(), kids.end());  // the list runs newest first: back to insertion order
    std::sort(kids.begin(), kids.end(),
              [&](uint32_t a, uint32_t b) { return Value(nodes_[a], 0) > Value(nodes_[b], 0); });
    nlohmann::json children = nlohmann::json::array();
    for (uint32_t c : kids) {
      if (emitted_ >= options_.max_nodes) {
        truncated_ = true;
        break;
      }
      children.push_back(Emit(c, diff));
    }
    j["children"] = std::move(children);
    return j;
  }

  const CallTreeOptions& options_;
  std::vector<Node> nodes_;
  std::vector<const FrameInfo*> functions_;
  std::unordered_map<std::string, uint32_t> function_index_;
  std::vector<uint32_t> frame_function_;  // frame index of the data being added -> function
  boost::unordered_flat_map<uint64_t, uint32_t> child_index_;
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
  return builder.ToJson(base != nullptr);
}

}  // namespace heapwatch::collector
