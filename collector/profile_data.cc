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

// Interns FrameInfo values so identical frames share one index.
class FrameInterner {
 public:
  explicit FrameInterner(std::vector<FrameInfo>& frames)
      : frames_(frames), index_(0, Hash{&frames}, Equal{&frames}) {}
  uint32_t Intern(FrameInfo f) {
    // Looked up by the frame itself (no key string built): at 100k stacks
    // the strings and their hash nodes cost most of building the profile.
    if (auto it = index_.find(f); it != index_.end()) return *it;
    auto id = static_cast<uint32_t>(frames_.size());
    frames_.push_back(std::move(f));
    index_.insert(id);
    return id;
  }

 private:
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
  // The set holds indexes into frames_; lookups take a FrameInfo.
  struct Hash {
    using is_transparent = void;
    const std::vector<FrameInfo>* frames;
    size_t operator()(uint32_t i) const { return HashOf((*frames)[i]); }
    size_t operator()(const FrameInfo& f) const { return HashOf(f); }
  };
  struct Equal {
    using is_transparent = void;
    const std::vector<FrameInfo>* frames;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(const FrameInfo& a, uint32_t b) const { return Same(a, (*frames)[b]); }
    bool operator()(uint32_t a, const FrameInfo& b) const { return Same((*frames)[a], b); }
  };

  std::vector<FrameInfo>& frames_;
  boost::unordered_flat_set<uint32_t, Hash, Equal> index_;
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

ProfileData BuildProfileData(const Process& process, SymbolService* symbols, double now) {
  ProfileData data;
  data.pid = process.pid();
  data.exe = process.exe();
  data.time = now;
  data.sample_bytes = process.sample_bytes();
  data.modules = process.modules();
  FrameInterner interner(data.frames);
  boost::unordered_flat_map<uint64_t, uint32_t> location_index;  // pc -> location
  std::unordered_map<int32_t, std::vector<uint64_t>> misses;     // module -> pcs

  // Built once per profile, not per address: what the symbolizer's cache is
  // keyed by for each module, and where the process's files are found.
  std::vector<symbolizer::ModuleRef> module_refs;
  std::vector<std::string> roots;
  if (symbols) {
    for (const ModuleInfo& m : process.modules()) module_refs.push_back({m.path, m.build_id});
    roots = symbols->Roots(process.pid());
  }

  auto resolve = [&](uint64_t pc) -> uint32_t {
    auto [it, inserted] = location_index.try_emplace(pc, static_cast<uint32_t>(data.locations.size()));
    if (!inserted) return it->second;
    ProfileData::Location loc;
    loc.address = pc;
    loc.first_frame = static_cast<uint32_t>(data.location_frames.size());
    const ModuleInfo* m = process.FindModule(pc);
    if (m) loc.module = static_cast<int32_t>(m - process.modules().data());
    std::optional<symbolizer::Location> found;
    if (m && symbols) {
      found = symbols->Peek(module_refs[static_cast<size_t>(loc.module)], roots,
                            SymbolService::LookupAddress(*m, pc));
    }
    if (found && found->status == symbolizer::Status::kOk && !found->frames.empty()) {
      for (const auto& sf : found->frames) {
        FrameInfo f;
        f.function = sf.function.empty() ? HexOffset(m->path, pc - m->load_bias) : sf.function;
        f.file = sf.file;
        f.line = sf.line;
        f.module = m->path;
        f.inlined = sf.inlined;
        data.location_frames.push_back(interner.Intern(std::move(f)));
      }
    } else {
      FrameInfo f;
      f.module = m ? m->path : "";
      f.function = HexOffset(f.module, m ? pc - m->load_bias : pc);
      f.unsymbolized = true;
      f.mismatch = found && found->status == symbolizer::Status::kBuildIdMismatch;
      data.location_frames.push_back(interner.Intern(std::move(f)));
      if (m && !found) misses[loc.module].push_back(pc);
      ++data.unresolved_locations;
    }
    loc.frame_count = static_cast<uint32_t>(data.location_frames.size()) - loc.first_frame;
    data.locations.push_back(loc);
    return it->second;
  };

  const auto& stacks = process.stacks();
  data.samples.reserve(stacks.size());
  for (const Stack& st : stacks) {
    if (st.stats.alloc_objects <= 0 && st.stats.live_samples == 0) continue;
    ProfileData::Sample s;
    s.stack_id = st.wire_id;
    s.stats = st.stats;
    s.first_location = static_cast<uint32_t>(data.sample_locations.size());
    for (uint64_t pc : process.StackPcs(st)) {
      const ModuleInfo* m = process.FindModule(pc);
      if (m && IsHeapwatchModule(m->path)) continue;  // the shim's own frames
      data.sample_locations.push_back(resolve(pc));
    }
    s.depth = static_cast<uint32_t>(data.sample_locations.size()) - s.first_location;
    if (s.depth == 0 && st.depth != 0) continue;
    if (st.depth == 0) {
      // The overflow pseudo-stack: one frame that says what it is.
      ProfileData::Location loc;
      loc.first_frame = static_cast<uint32_t>(data.location_frames.size());
      data.location_frames.push_back(interner.Intern({"[stacks over limit]", "", "", 0}));
      loc.frame_count = 1;
      data.sample_locations.push_back(static_cast<uint32_t>(data.locations.size()));
      data.locations.push_back(loc);
      s.depth = 1;
    }
    data.samples.push_back(s);
  }
  if (symbols) {
    for (auto& [module, pcs] : misses) {
      symbols->Request(process.modules()[static_cast<size_t>(module)], process.pid(), pcs);
    }
  }
  return data;
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
    std::string hex;
    for (unsigned char c : m.build_id) {
      char b[3];
      std::snprintf(b, sizeof(b), "%02x", c);
      hex += b;
    }
    modules.push_back({{"path", m.path}, {"build_id", hex}, {"load_bias", m.load_bias},
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
  return d;
}

}  // namespace heapwatch::collector
