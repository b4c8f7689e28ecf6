#include "collector/pprof.h"

#include <zlib.h>

#include <cmath>
#include <map>
#include <string_view>
#include <unordered_map>

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

class StringTable {
 public:
  StringTable() { Index(""); }  // string_table[0] must be ""
  int64_t Index(const std::string& s) {
    auto [it, inserted] = index_.try_emplace(s, static_cast<int64_t>(strings_.size()));
    if (inserted) strings_.push_back(s);
    return it->second;
  }
  const std::vector<std::string>& strings() const { return strings_; }

 private:
  std::unordered_map<std::string, int64_t> index_;
  std::vector<std::string> strings_;
};

// profile.proto field numbers.
enum ProfileField {
  kSampleType = 1, kSample = 2, kMapping = 3, kLocation = 4, kFunction = 5, kStringTable = 6,
  kTimeNanos = 9, kPeriodType = 11, kPeriod = 12, kComment = 13, kDefaultSampleType = 14,
};

}  // namespace

std::string EncodePprof(const ProfileData& d, SampleType default_type) {
  Encoder profile;
  StringTable strings;

  for (int t = 0; t < kSampleTypeCount; ++t) {
    Encoder vt;
    vt.Int(1, strings.Index(SampleTypeName(static_cast<SampleType>(t))));
    vt.Int(2, strings.Index(SampleTypeUnit(static_cast<SampleType>(t))));
    profile.Message(kSampleType, vt);
  }

  for (const auto& s : d.samples) {
    Encoder sample;
    std::vector<uint64_t> ids;
    ids.reserve(s.depth);
    for (uint32_t loc : d.SampleLocations(s)) ids.push_back(loc + 1);  // ids are 1-based
    sample.Packed(1, ids);
    std::vector<int64_t> values = {std::llround(s.stats.alloc_objects), std::llround(s.stats.alloc_bytes),
                                   std::llround(s.stats.live_objects), std::llround(s.stats.live_bytes)};
    sample.Packed(2, values);
    profile.Message(kSample, sample);
  }

  for (size_t i = 0; i < d.modules.size(); ++i) {
    const ModuleInfo& m = d.modules[i];
    Encoder mapping;
    mapping.Uint(1, i + 1);
    mapping.Uint(2, m.start);
    mapping.Uint(3, m.end);
    mapping.Uint(4, m.file_offset);
    mapping.Int(5, strings.Index(m.path));
    std::string hex;
    for (unsigned char c : m.build_id) {
      static const char kHex[] = "0123456789abcdef";
      hex += kHex[c >> 4];
      hex += kHex[c & 15];
    }
    mapping.Int(6, strings.Index(hex));
    mapping.Bool(7, true);
    mapping.Bool(8, true);
    mapping.Bool(9, true);
    mapping.Bool(10, true);
    profile.Message(kMapping, mapping);
  }

  // Functions by (name, file); ids 1-based. Looked up once per interned
  // frame (frame_function caches it): locations name the same frames many
  // times, and the map's string pairs dominated at 100k stacks.
  std::map<std::pair<std::string_view, std::string_view>, uint64_t> function_ids;
  std::vector<const FrameInfo*> functions;
  std::vector<uint64_t> frame_function(d.frames.size(), 0);
  auto function_id = [&](uint32_t frame) {
    uint64_t& id = frame_function[frame];
    if (id != 0) return id;
    const FrameInfo& f = d.frames[frame];
    auto [it, inserted] = function_ids.try_emplace({f.function, f.file}, functions.size() + 1);
    if (inserted) functions.push_back(&f);
    return id = it->second;
  };

  for (size_t i = 0; i < d.locations.size(); ++i) {
    const auto& l = d.locations[i];
    Encoder loc;
    loc.Uint(1, i + 1);
    if (l.module >= 0) loc.Uint(2, static_cast<uint64_t>(l.module) + 1);
    loc.Uint(3, l.address);
    // Lines: innermost (inlined) first, the caller last, as profile.proto says.
    for (uint32_t fi : d.LocationFrames(l)) {
      const FrameInfo& f = d.frames[fi];
      Encoder line;
      line.Uint(1, function_id(fi));
      line.Int(2, f.line);
      loc.Message(4, line);
    }
    profile.Message(kLocation, loc);
  }

  for (size_t i = 0; i < functions.size(); ++i) {
    const FrameInfo& f = *functions[i];
    Encoder fn;
    fn.Uint(1, i + 1);
    fn.Int(2, strings.Index(f.function));
    fn.Int(3, strings.Index(f.function));
    fn.Int(4, strings.Index(f.file));
    profile.Message(kFunction, fn);
  }

  profile.Int(kTimeNanos, static_cast<int64_t>(d.time * 1e9));
  Encoder period_type;
  period_type.Int(1, strings.Index("space"));
  period_type.Int(2, strings.Index("bytes"));
  profile.Message(kPeriodType, period_type);
  profile.Int(kPeriod, static_cast<int64_t>(d.sample_bytes));
  profile.Int(kComment, strings.Index("heapwatch pid " + std::to_string(d.pid) + " " + d.exe));
  profile.Int(kDefaultSampleType, strings.Index(SampleTypeName(default_type)));

  // The string table goes last: every Index() call above has happened.
  for (const auto& s : strings.strings()) profile.Bytes(kStringTable, s);
  return std::move(profile.str());
}

std::string Gzip(const std::string& data) {
  z_stream z{};
  // windowBits 15 + 16: gzip wrapper.
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out;
  out.resize(deflateBound(&z, data.size()) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return rc == Z_STREAM_END ? out : std::string();
}

}  // namespace heapwatch::collector
