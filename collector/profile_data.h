// A process's profile with names: the common form behind the JSON call tree,
// the pprof encoder, snapshots on disk and the leak report.
//
// Built on the loop thread from a Process plus whatever the SymbolService has
// already resolved (misses are queued and shown as module+offset). Snapshots
// serialise it to JSON and read it back, so a profile of a process long gone
// renders exactly like a live one.
#ifndef HEAPWATCH_COLLECTOR_PROFILE_DATA_H_
#define HEAPWATCH_COLLECTOR_PROFILE_DATA_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collector/process.h"

namespace heapwatch::collector {

class SymbolService;

enum class SampleType { kAllocObjects = 0, kAllocSpace = 1, kInuseObjects = 2, kInuseSpace = 3 };
inline constexpr int kSampleTypeCount = 4;
std::optional<SampleType> ParseSampleType(std::string_view name);
const char* SampleTypeName(SampleType type);
const char* SampleTypeUnit(SampleType type);  // "count" or "bytes" (pprof's units)
double StatValue(const StackStats& stats, SampleType type);

struct FrameInfo {
  std::string function;  // demangled; for unsymbolized frames "module+0xOFFSET"
  std::string file;
  std::string module;
  int line = 0;
  bool inlined = false;
  bool unsymbolized = false;
  bool mismatch = false;  // module on disk no longer matches the build-id
};

struct ProfileData {
  uint32_t pid = 0;
  std::string exe;
  double time = 0;           // when it was built
  uint64_t sample_bytes = 0;
  std::vector<ModuleInfo> modules;
  std::vector<FrameInfo> frames;            // interned
  struct Location {
    uint64_t address = 0;   // runtime pc
    int32_t module = -1;    // index into modules, -1 if none
    uint32_t first_frame = 0, frame_count = 0;  // into location_frames
  };
  std::vector<uint32_t> location_frames;    // innermost (most inlined) first
  std::vector<Location> locations;
  struct Sample {
    uint64_t stack_id = 0;
    uint32_t first_location = 0, depth = 0;  // into sample_locations
    StackStats stats;
  };
  std::vector<uint32_t> sample_locations;   // innermost first
  std::vector<Sample> samples;
  uint64_t unresolved_locations = 0;
  // The flame graph's function of each frame: frames with the same function,
  // module, inlined and mismatch flags share an id in [0, function_count). Filled by
  // BuildProfileData and ProfileDataFromJson; AssignFunctions() for others.
  std::vector<uint32_t> frame_function;
  uint32_t function_count = 0;
  // Bumped when locations already in the profile change their frames (names
  // resolved since the last update); appending locations does not bump it.
  uint64_t structure_version = 0;

  // Roughly the heap bytes this profile holds (for the cache's budget).
  size_t ApproxBytes() const;

  std::span<const uint32_t> LocationFrames(const Location& l) const {
    return {location_frames.data() + l.first_frame, l.frame_count};
  }
  std::span<const uint32_t> SampleLocations(const Sample& s) const {
    return {sample_locations.data() + s.first_location, s.depth};
  }
  // The frame a person would blame for the sample: the innermost frame that
  // is not in the allocator, the C++ runtime's operator new, or heapwatch.
  const FrameInfo* BlameFrame(const Sample& s) const;
};

// A raw build-id as lowercase hex, as `file` and pprof show it.
std::string BuildIdHex(std::string_view build_id);

// `symbols` may be null (no names: every frame is module+offset).
ProfileData BuildProfileData(const Process& process, SymbolService* symbols, double now);

// The flame-graph function id of each of `frames` (see frame_function);
// *count gets how many distinct ones there are.
std::vector<uint32_t> FunctionIdsOf(const std::vector<FrameInfo>& frames, uint32_t* count);
// Fills frame_function and function_count from the frames.
void AssignFunctions(ProfileData& data);

// Keeps one process's ProfileData current between requests: each Update()
// adds only the stacks the process gained since the last one, re-reads the
// names of locations that were waiting for the symbolizer, and copies the
// current figures. So a request costs what changed plus one pass over the
// stacks' figures, not a rebuild of every location and frame.
//
// A builder holds the module map it started with; when the process's
// module map changes (Stale), make a new one. Loop thread only.
class ProfileBuilder {
 public:
  ProfileBuilder(const Process& process, SymbolService* symbols);
  ~ProfileBuilder();
  ProfileBuilder(const ProfileBuilder&) = delete;
  ProfileBuilder& operator=(const ProfileBuilder&) = delete;

  // The profile as of now. The reference stays valid until the next
  // Update() or the builder's end.
  const ProfileData& Update(const Process& process, double now);
  bool Stale(const Process& process) const;
  // Moves the profile out; the builder is finished after this.
  ProfileData Take();

 private:
  class State;
  std::unique_ptr<State> state_;
};

nlohmann::json ProfileDataToJson(const ProfileData& data);
// Returns nullopt and sets *error for a document that does not fit.
std::optional<ProfileData> ProfileDataFromJson(const nlohmann::json& doc, std::string* error);

// The frames of a sample, innermost first, as JSON objects
// {name, file, line, module, inlined}.
nlohmann::json SampleFramesJson(const ProfileData& data, const ProfileData::Sample& sample);

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_PROFILE_DATA_H_
