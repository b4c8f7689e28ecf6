#include "collector/pprof.h"

#include <zlib.h>

#include <boost/unordered/unordered_flat_map.hpp>
#include <cmath>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace heapwatch::collector {
namespace {

// Protocol buffers wire encoding: just what profile.proto needs.
class Encoder {
 public:
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Tag(int field, int wire_type) { Varint((uint64_t(field) << 3) | uint64_t(wire_type)); }
  void Uint(int field, uint64_t v) {
    if (v == 0) return;  // proto3 default
    Tag(field, 0);
    Varint(v);
  }
  void Int(int field, int64_t v) { Uint(field, static_cast<uint64_t>(v)); }
  void Bool(int field, bool v) { Uint(field, v ? 1 : 0); }
  void Bytes(int field, std::string_view bytes) {
    Tag(field, 2);
    Varint(bytes.size());
    out_.append(bytes);
  }
  // A packed repeated varint field.
  template <typename T>
  void Packed(int field, const std::vector<T>& values) {
    if (values.empty()) return;
    Encoder inner;
    for (T v : values) inner.Varint(static_cast<uint64_t>(v));
    Bytes(field, inner.out_);
  }
  void Message(int field, const Encoder& msg) { Bytes(field, msg.out_); }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

// Each string once: the table holds the strings (a deque, so they never
// move) and the index looks them up by view.
class StringTable {
 public:
  StringTable() { Index(""); }  // string_table[0] must be ""
  int64_t Index(std::string_view s) {
    if (auto it = index_.find(s); it != index_.end()) return it->second;
    auto id = static_cast<int64_t>(strings_.size());
    index_.emplace(strings_.emplace_back(s), id);
    return id;
  }
  size_t size() const { return strings_.size(); }
  const std::string& operator[](size_t i) const { return strings_[i]; }

 private:
  boost::unordered_flat_map<std::string_view, int64_t> index_;
  std::deque<std::string> strings_;
};

// profile.proto field numbers.
enum ProfileField {
  kSampleType = 1, kSample = 2, kMapping = 3, kLocation = 4, kFunction = 5, kStringTable = 6,
  kTimeNanos = 9, kPeriodType = 11, kPeriod = 12, kComment = 13, kDefaultSampleType = 14,
};

// Writes profile.proto in two parts: the structure (mappings, locations,
// functions and the strings they name), which only grows while a process
// runs, and the figures (samples and the header fields), which change with
// every event. The structure can be written in several pieces as the
// profile grows: repeated fields may be split and interleaved freely, and
// the string table's order is kept because every piece appends its new
// strings in index order. The figures name no new strings.
class ProfileWriter {
 public:
  explicit ProfileWriter(const ProfileData& d) {
    for (int t = 0; t < kSampleTypeCount; ++t) {
      type_name_[t] = strings_.Index(SampleTypeName(static_cast<SampleType>(t)));
      type_unit_[t] = strings_.Index(SampleTypeUnit(static_cast<SampleType>(t)));
    }
    space_ = strings_.Index("space");
    bytes_ = strings_.Index("bytes");
    comment_ = strings_.Index("heapwatch pid " + std::to_string(d.pid) + " " + d.exe);
    for (size_t i = 0; i < d.modules.size(); ++i) {
      const ModuleInfo& m = d.modules[i];
      Encoder mapping;
      mapping.Uint(1, i + 1);
      mapping.Uint(2, m.start);
      mapping.Uint(3, m.end);
      mapping.Uint(4, m.file_offset);
      mapping.Int(5, strings_.Index(m.path));
      mapping.Int(6, strings_.Index(BuildIdHex(m.build_id)));
      mapping.Bool(7, true);
      mapping.Bool(8, true);
      mapping.Bool(9, true);
      mapping.Bool(10, true);
      pending_.Message(kMapping, mapping);
    }
    modules_ = d.modules.size();
  }

  // Whether `d` is the profile this writer has been writing, grown since.
  bool Follows(const ProfileData& d) const {
    return d.structure_version == structure_version_ && d.modules.size() == modules_ &&
           d.locations.size() >= locations_done_ && d.frames.size() >= frame_function_.size();
  }
  void set_structure_version(uint64_t v) { structure_version_ = v; }

  // The structure `d` gained since the last call (all of it the first time).
  std::string Structure(const ProfileData& d) {
    frame_function_.resize(d.frames.size(), 0);
    size_t first_function = functions_.size();
    for (size_t i = locations_done_; i < d.locations.size(); ++i) {
      const auto& l = d.locations[i];
      Encoder loc;
      loc.Uint(1, i + 1);
      if (l.module >= 0) loc.Uint(2, static_cast<uint64_t>(l.module) + 1);
      loc.Uint(3, l.address);
      // Lines: innermost (inlined) first, the caller last, as profile.proto says.
      for (uint32_t fi : d.LocationFrames(l)) {
        Encoder line;
        line.Uint(1, FunctionId(d, fi));
        line.Int(2, d.frames[fi].line);
        loc.Message(4, line);
      }
      pending_.Message(kLocation, loc);
    }
    locations_done_ = d.locations.size();
    for (size_t i = first_function; i < functions_.size(); ++i) {
      const FrameInfo& f = d.frames[functions_[i]];
      Encoder fn;
      fn.Uint(1, i + 1);
      fn.Int(2, strings_.Index(f.function));
      fn.Int(3, strings_.Index(f.function));
      fn.Int(4, strings_.Index(f.file));
      pending_.Message(kFunction, fn);
    }
    // The strings named since the last call; every Index() above has happened.
    for (size_t i = strings_done_; i < strings_.size(); ++i) pending_.Bytes(kStringTable, strings_[i]);
    strings_done_ = strings_.size();
    return std::exchange(pending_.str(), {});
  }

  // The figures: sample types, samples and the header fields.
  std::string Figures(const ProfileData& d, SampleType default_type) const {
    Encoder profile;
    for (int t = 0; t < kSampleTypeCount; ++t) {
      Encoder vt;
      vt.Int(1, type_name_[t]);
      vt.Int(2, type_unit_[t]);
      profile.Message(kSampleType, vt);
    }
    std::vector<uint64_t> ids;
    for (const auto& s : d.samples) {
      Encoder sample;
      ids.clear();
      for (uint32_t loc : d.SampleLocations(s)) ids.push_back(loc + 1);  // ids are 1-based
      sample.Packed(1, ids);
      std::vector<int64_t> values = {std::llround(s.stats.alloc_objects), std::llround(s.stats.alloc_bytes),
                                     std::llround(s.stats.live_objects), std::llround(s.stats.live_bytes)};
      sample.Packed(2, values);
      profile.Message(kSample, sample);
    }
    profile.Int(kTimeNanos, static_cast<int64_t>(d.time * 1e9));
    Encoder period_type;
    period_type.Int(1, space_);
    period_type.Int(2, bytes_);
    profile.Message(kPeriodType, period_type);
    profile.Int(kPeriod, static_cast<int64_t>(d.sample_bytes));
    profile.Int(kComment, comment_);
    profile.Int(kDefaultSampleType, type_name_[static_cast<int>(default_type)]);
    return std::move(profile.str());
  }

 private:
  // Functions by (name, file); ids 1-based. Looked up once per interned
  // frame (frame_function_ keeps it): locations name the same frames many
  // times, and the map's string pairs dominated at 100k stacks.
  uint64_t FunctionId(const ProfileData& d, uint32_t frame) {
    uint64_t& id = frame_function_[frame];
    if (id != 0) return id;
    const FrameInfo& f = d.frames[frame];
    // Keyed by the string table's ids of name and file: no string copies.
    uint64_t key = (static_cast<uint64_t>(strings_.Index(f.function)) << 32) |
                   static_cast<uint64_t>(strings_.Index(f.file));
    auto [it, inserted] = function_ids_.try_emplace(key, functions_.size() + 1);
    if (inserted) functions_.push_back(frame);
    return id = it->second;
  }

  StringTable strings_;
  Encoder pending_;
  int64_t type_name_[kSampleTypeCount] = {}, type_unit_[kSampleTypeCount] = {};
  int64_t space_ = 0, bytes_ = 0, comment_ = 0;
  size_t modules_ = 0, locations_done_ = 0, strings_done_ = 0;
  uint64_t structure_version_ = 0;
  boost::unordered_flat_map<uint64_t, uint64_t> function_ids_;  // name id << 32 | file id
  std::vector<uint32_t> functions_;        // function id - 1 -> a frame of it
  std::vector<uint64_t> frame_function_;   // frame -> function id (0: not yet)
};

// Appends `data` to `out` as one gzip member.
void GzipAppend(std::string& out, const std::string& data) {
  z_stream z{};
  // windowBits 15 + 16: gzip wrapper; the fast level: profiles are served on demand.
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("gzip: cannot start deflate");
  }
  size_t start = out.size();
  out.resize(start + deflateBound(&z, data.size()) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data() + start);
  z.avail_out = static_cast<uInt>(out.size() - start);
  int rc = deflate(&z, Z_FINISH);
  out.resize(start + z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("gzip: deflate failed");
}

}  // namespace

std::string EncodePprof(const ProfileData& d, SampleType default_type) {
  ProfileWriter writer(d);
  std::string out = writer.Structure(d);
  out += writer.Figures(d, default_type);
  return out;
}

// The structure is kept compressed, as the gzip members written so far;
// more than this many and they are rewritten as one (small members compress
// poorly).
constexpr size_t kMaxMembers = 32;

class PprofEncoder::State {
 public:
  std::string Encode(const ProfileData& d, SampleType default_type) {
    if (!writer_ || !writer_->Follows(d) || members_ >= kMaxMembers) {
      writer_ = std::make_unique<ProfileWriter>(d);
      writer_->set_structure_version(d.structure_version);
      structure_.clear();
      members_ = 0;
    }
    std::string grown = writer_->Structure(d);
    if (!grown.empty()) {
      GzipAppend(structure_, grown);
      ++members_;
    }
    std::string out = structure_;
    GzipAppend(out, writer_->Figures(d, default_type));
    return out;
  }

 private:
  std::unique_ptr<ProfileWriter> writer_;
  std::string structure_;  // gzip members
  size_t members_ = 0;
};

PprofEncoder::PprofEncoder() : state_(std::make_unique<State>()) {}
PprofEncoder::~PprofEncoder() = default;
std::string PprofEncoder::Encode(const ProfileData& data, SampleType default_type) {
  return state_->Encode(data, default_type);
}

std::string Gzip(const std::string& data) {
  std::string out;
  try {
    GzipAppend(out, data);
  } catch (const std::runtime_error&) {
    return {};
  }
  return out;
}

}  // namespace heapwatch::collector
