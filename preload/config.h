// The shim's configuration, read once from the environment (see DESIGN.md,
// "Public interface"). Parsing uses no heap: it runs inside the first malloc.
//
//   HEAPWATCH_SOCKET        collector socket      /run/heapwatch/heapwatch.sock
//   HEAPWATCH_SAMPLE_BYTES  mean bytes per sample 524288 (1 = every allocation)
//   HEAPWATCH_MAX_FRAMES    stack depth cap       64 (clamped to 1..wire::kMaxFrames)
//   HEAPWATCH_DISABLE       1 = pure pass-through unset
//   HEAPWATCH_UNWIND        libunwind | fp        libunwind
//   HEAPWATCH_UNWIND_CACHES threads with libunwind's 256 KiB trace cache
//                                                 32 (4096 if R < 64 KiB; see unwinder.h)
//   HEAPWATCH_TABLE_SLOTS   live-table slots      derived from the sample rate
//   HEAPWATCH_RING_SLOTS    event-ring slots      derived from the sample rate
// Malformed numbers fall back to the default (the shim never refuses to run).
#ifndef HEAPWATCH_PRELOAD_CONFIG_H_
#define HEAPWATCH_PRELOAD_CONFIG_H_

#include <stddef.h>
#include <stdint.h>

namespace heapwatch::preload {

inline constexpr uint64_t kDefaultSampleBytes = 524288;
inline constexpr uint32_t kDefaultMaxFrames = 64;
inline constexpr uint32_t kDefaultUnwindCaches = 32;
inline constexpr uint32_t kMaxUnwindCaches = 4096;

struct Config {
  uint64_t sample_bytes = kDefaultSampleBytes;
  uint32_t max_frames = kDefaultMaxFrames;
  bool disabled = false;
  bool frame_pointers = false;
  uint32_t unwind_caches = kDefaultUnwindCaches;
  uint64_t table_slots = 0;  // power of two after parsing
  uint64_t ring_slots = 0;   // power of two after parsing
  char socket_path[108] = "/run/heapwatch/heapwatch.sock";  // sun_path size
};

using GetEnvFn = const char* (*)(const char* name);

// Fills *config from `getenv` (injectable for tests). Never allocates.
void ParseConfig(GetEnvFn getenv_fn, Config* config);

// Rounds up to a power of two, clamped to [lo, hi] (both powers of two).
uint64_t RoundUpPow2(uint64_t v, uint64_t lo, uint64_t hi);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_CONFIG_H_
