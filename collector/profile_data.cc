#include "collector/profile_data.h"

#include <boost/container_hash/hash.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <cstdio>
#include <map>
#include <string_view>
#include <unordered_map>

#include "collector/symbol_service.h"

namespace heapwatch::collector {

namespace {
constexpr const char* kTypeNames[] = {"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"};

std::string Basename(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool IsHeapwatchModule(const std::string& path) {
  return Basename(path).rfind("libheapwatch", 0) == 0;
}

std::string HexOffset(const std::string& module, uint64_t offset) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "+0x%llx", static_cast<unsigned long long>(offset));
  return (module.empty() ? std::string("[unknown]") : Basename(module)) + buf;
}

// A set of ids of distinct frames, looked up by a frame. Each slot keeps
// its frame's hash, so growing the table never hashes strings again: at
// millions of distinct frames the rehashes cost more than the lookups.
// `Key` gives an id's frame, and says which fields make frames the same.
template <typename Key>
class FrameIdSet {
 public:
  explicit FrameIdSet(Key key) : key_(std::move(key)), set_(0, Hash{}, Equal{&key_}) {}
  // The id of a frame the same as `f`, if there is one.
  std::optional<uint32_t> Find(const FrameInfo& f, size_t hash) const {
    auto it = set_.find(Probe{&f, hash});
    return it == set_.end() ? std::nullopt : std::optional<uint32_t>(it->id);
  }
  void Insert(uint32_t id, size_t hash) { set_.insert(Slot{hash, id}); }

 private:
  struct Slot {
    size_t hash;
    uint32_t id;
  };
  struct Probe {
    const FrameInfo* frame;
    size_t hash;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(const Slot& s) const { return s.hash; }
    size_t operator()(const Probe& p) const { return p.hash; }
  };
  struct Equal {
    using is_transparent = void;
    const Key* key;
    bool operator()(const Slot& a, const Slot& b) const { return a.id == b.id; }
    bool operator()(const Probe& p, const Slot& s) const {
      return p.hash == s.hash && Key::Same(*p.frame, key->Frame(s.id));
    }
    bool operator()(const Slot& s, const Probe& p) const { return (*this)(p, s); }
  };

  Key key_;
  boost::unordered_flat_set<Slot, Hash, Equal> set_;
};

// Frames are the same when every field is.
struct WholeFrame {
  const std::vector<FrameInfo>* frames;
  const FrameInfo& Frame(uint32_t id) const { return (*frames)[id]; }
  static size_t HashOf(const FrameInfo& f) {
    size_t h = std::hash<std::string_view>{}(f.function);
    boost::hash_combine(h, std::hash<std::string_view>{}(f.file));
    boost::hash_combine(h, std::hash<std::string_view>{}(f.module));
    boost::hash_combine(h, f.line);
    boost::hash_combine(h, f.inlined * 2 + f.mismatch);
    return h;
  }
  static bool Same(const FrameInfo& a, const FrameInfo& b) {
    return a.line == b.line && a.inlined == b.inlined && a.mismatch == b.mismatch &&
           a.function == b.function && a.file == b.file && a.module == b.module;
  }
};

// Interns FrameInfo values so identical frames share one index.
class FrameInterner {
 public:
  explicit FrameInterner(std::vector<FrameInfo>& frames) : frames_(frames), index_(WholeFrame{&frames}) {}
  uint32_t Intern(FrameInfo f) {
    // Looked up by the frame itself (no key string built): at 100k stacks
    // the strings and their hash nodes cost most of building the profile.
    size_t hash = WholeFrame::HashOf(f);
    if (auto id = index_.Find(f, hash)) return *id;
    auto id = static_cast<uint32_t>(frames_.size());
    frames_.push_back(std::move(f));
    index_.Insert(id, hash);
    return id;
  }

 private:
  std::vector<FrameInfo>& frames_;
  FrameIdSet<WholeFrame> index_;
};

}  // namespace

std::optional<SampleType> ParseSampleType(std::string_view name) {
  for (int i = 0; i < kSampleTypeCount; ++i) {
    if (name == kTypeNames[i]) return static_cast<SampleType>(i);
  }
  return std::nullopt;
}

const char* SampleTypeName(SampleType type) { return kTypeNames[static_cast<int>(type)]; }

const char* SampleTypeUnit(SampleType type) {
  return (type == SampleType::kAllocSpace || type == SampleType::kInuseSpace) ? "bytes" : "count";
}

double StatValue(const StackStats& s, SampleType type) {
  switch (type) {
    case SampleType::kAllocObjects: return s.alloc_objects;
    case SampleType::kAllocSpace: return s.alloc_bytes;
    case SampleType::kInuseObjects: return s.live_objects;
    case SampleType::kInuseSpace: return s.live_bytes;
  }
  return 0;
}

std::string BuildIdHex(std::string_view build_id) {
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(build_id.size() * 2);
  for (unsigned char c : build_id) {
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return hex;
}

size_t ProfileData::ApproxBytes() const {
  size_t bytes = 0;
  for (const FrameInfo& f : frames) {
    bytes += sizeof(FrameInfo);
    for (const std::string* s : {&f.function, &f.file, &f.module}) {
      if (s->size() > 15) bytes += s->capacity() + 1;  // beyond the small-string buffer
    }
  }
  return bytes + locations.size() * sizeof(Location) + samples.size() * sizeof(Sample) +
         (location_frames.size() + sample_locations.size() + frame_function.size()) * sizeof(uint32_t);
}

const FrameInfo* ProfileData::BlameFrame(const Sample& s) const {
  static const char* kAllocatorNames[] = {"operator new", "operator new[]", "malloc", "calloc",
                                          "realloc", "__libc_", "std::allocator", "__gnu_cxx::new_allocator",
                                          "std::__new_allocator", "std::allocator_traits"};
  const FrameInfo* first = nullptr;
  for (uint32_t loc : SampleLocations(s)) {
    const Location& l = locations[loc];
    // Walk a location's inline chain outermost-last: innermost first, as stored.
    for (uint32_t fi : LocationFrames(l)) {
      const FrameInfo& f = frames[fi];
      if (!first) first = &f;
      bool allocator = false;
      for (const char* name : kAllocatorNames) {
        if (f.function.rfind(name, 0) == 0) allocator = true;
      }
      std::string mod = Basename(f.module);
      if (mod.rfind("libstdc++", 0) == 0 || mod.rfind("libc.so", 0) == 0 ||
          mod.rfind("libjemalloc", 0) == 0 || mod.rfind("libtcmalloc", 0) == 0 ||
          IsHeapwatchModule(f.module)) {
        allocator = true;
      }
      if (!allocator) return &f;
    }
  }
  return first;
}

namespace {

// Frames are the same flame-graph function when their function name, module
// and inlined and mismatch flags are (a module+offset frame waiting for the
// symbolizer and the same frame found mismatched are told apart); ids index
// `representative` (a frame of each).
struct SameFunction {
  const std::vector<FrameInfo>* frames;
  const std::vector<uint32_t>* representative;
  const FrameInfo& Frame(uint32_t id) const { return (*frames)[(*representative)[id]]; }
  static size_t HashOf(const FrameInfo& f) {
    size_t h = std::hash<std::string_view>{}(f.function);
    boost::hash_combine(h, std::hash<std::string_view>{}(f.module));
    boost::hash_combine(h, f.inlined * 2 + f.mismatch);
    return h;
  }
  static bool Same(const FrameInfo& a, const FrameInfo& b) {
    return a.inlined == b.inlined && a.mismatch == b.mismatch && a.function == b.function &&
           a.module == b.module;
  }
};

// Interns flame-graph functions: frames that are SameFunction share one id.
class FunctionInterner {
 public:
  explicit FunctionInterner(const std::vector<FrameInfo>& frames)
      : frames_(frames), index_(SameFunction{&frames, &representative_}) {}
  uint32_t Intern(uint32_t frame) {
    const FrameInfo& f = frames_[frame];
    size_t hash = SameFunction::HashOf(f);
    if (auto id = index_.Find(f, hash)) return *id;
    auto id = static_cast<uint32_t>(representative_.size());
    representative_.push_back(frame);
    index_.Insert(id, hash);
    return id;
  }
  uint32_t count() const { return static_cast<uint32_t>(representative_.size()); }

 private:
  const std::vector<FrameInfo>& frames_;
  std::vector<uint32_t> representative_;  // function id -> a frame of it
  FrameIdSet<SameFunction> index_;
};

}  // namespace

std::vector<uint32_t> FunctionIdsOf(const std::vector<FrameInfo>& frames, uint32_t* count) {
  FunctionInterner functions(frames);
  std::vector<uint32_t> ids(frames.size());
  for (uint32_t i = 0; i < frames.size(); ++i) ids[i] = functions.Intern(i);
  *count = functions.count();
  return ids;
}

void AssignFunctions(ProfileData& data) { data.frame_function = FunctionIdsOf(data.frames, &data.function_count); }

class ProfileBuilder::State {
 public:
  State(const Process& process, SymbolService* symbols)
      : symbols_(symbols), modules_generation_(process.modules_generation()), interner_(data_.frames),
        functions_(data_.frames) {
    data_.pid = process.pid();
    data_.exe = process.exe();
    data_.sample_bytes = process.sample_bytes();
    data_.modules = process.modules();
    // Built once, not per address: what the symbolizer's cache is keyed by
    // for each module, and where the process's files are found.
    if (symbols_) {
      for (const ModuleInfo& m : data_.modules) module_refs_.push_back({m.path, m.build_id});
      roots_ = symbols_->Roots(process.pid());
    }
  }

  bool Stale(const Process& process) const { return process.modules_generation() != modules_generation_; }

  const ProfileData& Update(const Process& process, double now) {
    data_.time = now;
    if (symbols_) {
      uint64_t completed = symbols_->completed_batches();
      if (completed != symbols_seen_ && !pending_.empty()) ReadPending(now);
      symbols_seen_ = completed;
    }
    const auto& stacks = process.stacks();
    all_samples_.reserve(stacks.size());
    size_t new_pcs = 0;
    for (size_t i = all_samples_.size(); i < stacks.size(); ++i) new_pcs += stacks[i].depth + 1;
    // Room for the worst case (every pc new) up front: growing these one
    // doubling at a time moved and page-faulted most of a million-frame
    // build. What stays unused is address space the kernel never backs.
    data_.sample_locations.reserve(data_.sample_locations.size() + new_pcs);
    if (new_pcs > 4096) {
      data_.locations.reserve(data_.locations.size() + new_pcs);
      data_.location_frames.reserve(data_.location_frames.size() + new_pcs);
      data_.frames.reserve(data_.frames.size() + new_pcs);
      data_.frame_function.reserve(data_.frame_function.size() + new_pcs);
    }
    for (size_t i = all_samples_.size(); i < stacks.size(); ++i) AddStack(process, stacks[i]);
    RequestMisses(process);

    data_.samples.clear();
    for (size_t i = 0; i < all_samples_.size(); ++i) {
      const ProfileData::Sample& s = all_samples_[i];
      const StackStats& stats = stacks[i].stats;
      if (s.depth == 0 || (stats.alloc_objects <= 0 && stats.live_samples == 0)) continue;
      data_.samples.push_back(s);
      data_.samples.back().stats = stats;
    }
    return data_;
  }

  ProfileData Take() { return std::move(data_); }

 private:
  void AddStack(const Process& process, const Stack& st) {
    ProfileData::Sample s;
    s.stack_id = st.wire_id;
    s.first_location = static_cast<uint32_t>(data_.sample_locations.size());
    for (uint64_t pc : process.StackPcs(st)) {
      uint32_t loc = Resolve(process, pc, st.epoch);
      if (loc != kShimFrame) data_.sample_locations.push_back(loc);
    }
    s.depth = static_cast<uint32_t>(data_.sample_locations.size()) - s.first_location;
    if (st.depth == 0) {
      // The overflow pseudo-stack: one frame that says what it is.
      ProfileData::Location loc;
      loc.first_frame = static_cast<uint32_t>(data_.location_frames.size());
      PushFrame({"[stacks over limit]", "", "", 0});
      loc.frame_count = 1;
      data_.sample_locations.push_back(static_cast<uint32_t>(data_.locations.size()));
      data_.locations.push_back(loc);
      s.depth = 1;
    }
    // depth 0 now: every frame was the shim's; such a sample is never shown.
    all_samples_.push_back(s);
  }

  void PushFrame(FrameInfo f) {
    uint32_t frame = interner_.Intern(std::move(f));
    if (frame == data_.frame_function.size()) {
      data_.frame_function.push_back(functions_.Intern(frame));
      data_.function_count = functions_.count();
    }
    data_.location_frames.push_back(frame);
  }

  // The symbolizer's answer for the location's pc, or nullopt if it has none
  // yet (not resolved, or evicted from its cache).
  std::optional<symbolizer::Location> Lookup(int32_t module, uint64_t pc) const {
    const ModuleInfo& m = data_.modules[static_cast<size_t>(module)];
    return symbols_->Peek(module_refs_[static_cast<size_t>(module)], roots_, SymbolService::LookupAddress(m, pc));
  }

  // Appends the location's frames for `found` (names) or its module+offset.
  void PushFrames(const ModuleInfo* m, uint64_t pc, const std::optional<symbolizer::Location>& found) {
    if (found && found->status == symbolizer::Status::kOk && !found->frames.empty()) {
      for (const auto& sf : found->frames) {
        FrameInfo f;
        f.function = sf.function.empty() ? HexOffset(m->path, pc - m->load_bias) : sf.function;
        f.file = sf.file;
        f.line = sf.line;
        f.module = m->path;
        f.inlined = sf.inlined;
        PushFrame(std::move(f));
      }
      return;
    }
    FrameInfo f;
    f.module = m ? m->path : "";
    f.function = HexOffset(f.module, m ? pc - m->load_bias : pc);
    f.unsymbolized = true;
    f.mismatch = found && found->status == symbolizer::Status::kBuildIdMismatch;
    PushFrame(std::move(f));
    ++data_.unresolved_locations;
  }

  // The location of `pc` in a stack of `epoch`, made on first sight;
  // kShimFrame for the shim's own frames, which profiles leave out. Looked
  // up once per distinct pc (stacks repeat the same pcs millions of times),
  // and again only for a stack of an epoch in which another module held the
  // pc (ModuleHistory: a range reused after an unload).
  uint32_t Resolve(const Process& process, uint64_t pc, uint64_t epoch) {
    auto [it, inserted] = location_index_.try_emplace(pc);
    KnownPc& known = it->second;
    if (!inserted && known.epochs.Contains(epoch)) return known.location;
    const ModuleInfo* m = process.module_history().Find(pc, epoch, &known.epochs);
    if (m && IsHeapwatchModule(m->path)) return known.location = kShimFrame;
    int32_t module = m ? static_cast<int32_t>(m - process.modules().data()) : -1;
    // Back in the same module as before (the epochs between had none).
    if (!inserted && known.location != kShimFrame && data_.locations[known.location].module == module) {
      return known.location;
    }
    known.location = static_cast<uint32_t>(data_.locations.size());
    ProfileData::Location loc;
    loc.address = pc;
    loc.first_frame = static_cast<uint32_t>(data_.location_frames.size());
    loc.module = module;
    std::optional<symbolizer::Location> found;
    if (m && symbols_) found = Lookup(loc.module, pc);
    PushFrames(m, pc, found);
    if (m && symbols_ && !found) {
      pending_.push_back(known.location);
      new_misses_[loc.module].push_back(pc);
    }
    loc.frame_count = static_cast<uint32_t>(data_.location_frames.size()) - loc.first_frame;
    data_.locations.push_back(loc);
    return known.location;
  }

  // Locations that waited for the symbolizer: those it has answered now get
  // their names (their frames are appended; the old module+offset frame stays
  // interned but unused by them).
  void ReadPending(double now) {
    bool changed = false;
    std::vector<uint32_t> still;
    for (uint32_t index : pending_) {
      ProfileData::Location& loc = data_.locations[index];
      const ModuleInfo& m = data_.modules[static_cast<size_t>(loc.module)];
      auto found = Lookup(loc.module, loc.address);
      if (!found) {
        still.push_back(index);
        continue;
      }
      --data_.unresolved_locations;
      loc.first_frame = static_cast<uint32_t>(data_.location_frames.size());
      PushFrames(&m, loc.address, found);
      loc.frame_count = static_cast<uint32_t>(data_.location_frames.size()) - loc.first_frame;
      changed = true;
    }
    pending_.swap(still);
    if (changed) ++data_.structure_version;
    // Asked for and still unknown (the queue shed them, or the cache evicted
    // them): ask again, at most every few seconds.
    if (!pending_.empty() && now - last_rerequest_ > 5) {
      last_rerequest_ = now;
      for (uint32_t index : pending_) {
        const ProfileData::Location& loc = data_.locations[index];
        new_misses_[loc.module].push_back(loc.address);
      }
    }
  }

  void RequestMisses(const Process& process) {
    for (auto& [module, pcs] : new_misses_) {
      symbols_->Request(data_.modules[static_cast<size_t>(module)], process.pid(), pcs);
    }
    new_misses_.clear();
  }

  static constexpr uint32_t kShimFrame = UINT32_MAX;
  SymbolService* const symbols_;
  const uint64_t modules_generation_;
  ProfileData data_;
  FrameInterner interner_;
  FunctionInterner functions_;
  std::vector<symbolizer::ModuleRef> module_refs_;
  std::vector<std::string> roots_;
  // A pc's location, and the epochs its module (or none) holds it for.
  struct KnownPc {
    uint32_t location = 0;
    ModuleHistory::EpochRange epochs;
  };
  boost::unordered_flat_map<uint64_t, KnownPc> location_index_;  // pc -> location
  std::vector<ProfileData::Sample> all_samples_;  // one per stack of the process, in order
  std::vector<uint32_t> pending_;                 // locations waiting for names
  std::unordered_map<int32_t, std::vector<uint64_t>> new_misses_;  // module -> pcs
  uint64_t symbols_seen_ = 0;
  double last_rerequest_ = 0;
};

ProfileBuilder::ProfileBuilder(const Process& process, SymbolService* symbols)
    : state_(std::make_unique<State>(process, symbols)) {}
ProfileBuilder::~ProfileBuilder() = default;
const ProfileData& ProfileBuilder::Update(const Process& process, double now) {
  return state_->Update(process, now);
}
bool ProfileBuilder::Stale(const Process& process) const { return state_->Stale(process); }
ProfileData ProfileBuilder::Take() { return state_->Take(); }

ProfileData BuildProfileData(const Process& process, SymbolService* symbols, double now) {
  ProfileBuilder builder(process, symbols);
  builder.Update(process, now);
  return builder.Take();
}

nlohmann::json SampleFramesJson(const ProfileData& data, const ProfileData::Sample& sample) {
  nlohmann::json out = nlohmann::json::array();
  for (uint32_t loc : data.SampleLocations(sample)) {
    for (uint32_t fi : data.LocationFrames(data.locations[loc])) {
      const FrameInfo& f = data.frames[fi];
      nlohmann::json j = {{"name", f.function}, {"file", f.file}, {"line", f.line},
                          {"module", f.module}, {"inlined", f.inlined}};
      if (f.unsymbolized) j["unsymbolized"] = true;
      if (f.mismatch) j["mismatch"] = true;
      out.push_back(std::move(j));
    }
  }
  return out;
}

nlohmann::json ProfileDataToJson(const ProfileData& d) {
  using nlohmann::json;
  json modules = json::array();
  for (const auto& m : d.modules) {
    modules.push_back({{"path", m.path}, {"build_id", BuildIdHex(m.build_id)}, {"load_bias", m.load_bias},
                       {"start", m.start}, {"end", m.end}, {"file_offset", m.file_offset}});
  }
  json frames = json::array();
  for (const auto& f : d.frames) {
    frames.push_back({f.function, f.file, f.module, f.line,
                      (f.inlined ? 1 : 0) | (f.unsymbolized ? 2 : 0) | (f.mismatch ? 4 : 0)});
  }
  json locations = json::array();
  for (const auto& l : d.locations) {
    locations.push_back({l.address, l.module, l.first_frame, l.frame_count});
  }
  json samples = json::array();
  for (const auto& s : d.samples) {
    samples.push_back({s.stack_id, s.first_location, s.depth, s.stats.alloc_objects,
                       s.stats.alloc_bytes, s.stats.live_objects, s.stats.live_bytes,
                       s.stats.live_samples});
  }
  return {{"version", 1},
          {"pid", d.pid},
          {"exe", d.exe},
          {"time", d.time},
          {"sample_bytes", d.sample_bytes},
          {"modules", std::move(modules)},
          {"frames", std::move(frames)},
          {"location_frames", d.location_frames},
          {"locations", std::move(locations)},
          {"sample_locations", d.sample_locations},
          {"samples", std::move(samples)}};
}

std::optional<ProfileData> ProfileDataFromJson(const nlohmann::json& doc, std::string* error) {
  ProfileData d;
  try {
    if (doc.at("version").get<int>() != 1) {
      *error = "unsupported profile version";
      return std::nullopt;
    }
    d.pid = doc.at("pid").get<uint32_t>();
    d.exe = doc.at("exe").get<std::string>();
    d.time = doc.at("time").get<double>();
    d.sample_bytes = doc.at("sample_bytes").get<uint64_t>();
    for (const auto& m : doc.at("modules")) {
      ModuleInfo info{m.at("load_bias").get<uint64_t>(), m.at("start").get<uint64_t>(),
                      m.at("end").get<uint64_t>(), m.value("file_offset", uint64_t{0}), "",
                      m.at("path").get<std::string>()};
      std::string hex = m.at("build_id").get<std::string>();
      for (size_t i = 0; i + 1 < hex.size(); i += 2) {
        info.build_id.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
      }
      d.modules.push_back(std::move(info));
    }
    for (const auto& f : doc.at("frames")) {
      int flags = f.at(4).get<int>();
      d.frames.push_back({f.at(0).get<std::string>(), f.at(1).get<std::string>(),
                          f.at(2).get<std::string>(), f.at(3).get<int>(), (flags & 1) != 0,
                          (flags & 2) != 0, (flags & 4) != 0});
    }
    d.location_frames = doc.at("location_frames").get<std::vector<uint32_t>>();
    for (const auto& l : doc.at("locations")) {
      ProfileData::Location loc{l.at(0).get<uint64_t>(), l.at(1).get<int32_t>(),
                                l.at(2).get<uint32_t>(), l.at(3).get<uint32_t>()};
      if (loc.module >= static_cast<int32_t>(d.modules.size()) ||
          uint64_t{loc.first_frame} + loc.frame_count > d.location_frames.size()) {
        *error = "location out of range";
        return std::nullopt;
      }
      d.locations.push_back(loc);
    }
    for (uint32_t f : d.location_frames) {
      if (f >= d.frames.size()) {
        *error = "frame index out of range";
        return std::nullopt;
      }
    }
    d.sample_locations = doc.at("sample_locations").get<std::vector<uint32_t>>();
    for (uint32_t l : d.sample_locations) {
      if (l >= d.locations.size()) {
        *error = "location index out of range";
        return std::nullopt;
      }
    }
    for (const auto& s : doc.at("samples")) {
      ProfileData::Sample sample;
      sample.stack_id = s.at(0).get<uint64_t>();
      sample.first_location = s.at(1).get<uint32_t>();
      sample.depth = s.at(2).get<uint32_t>();
      sample.stats.alloc_objects = s.at(3).get<double>();
      sample.stats.alloc_bytes = s.at(4).get<double>();
      sample.stats.live_objects = s.at(5).get<double>();
      sample.stats.live_bytes = s.at(6).get<double>();
      sample.stats.live_samples = s.at(7).get<uint32_t>();
      if (uint64_t{sample.first_location} + sample.depth > d.sample_locations.size()) {
        *error = "sample out of range";
        return std::nullopt;
      }
      d.samples.push_back(sample);
    }
  } catch (const nlohmann::json::exception& e) {
    *error = std::string("malformed profile: ") + e.what();
    return std::nullopt;
  }
  AssignFunctions(d);
  return d;
}

}  // namespace heapwatch::collector
