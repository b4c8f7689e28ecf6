#include "config.h"

#include <string.h>

#include <heapwatch/wire.h>

#include "text.h"

namespace heapwatch::preload {
namespace {

// Parses a decimal uint64; false on empty, junk or overflow.
bool ParseU64(const char* s, uint64_t* out) {
  if (!s || !*s) return false;
  uint64_t v = 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
    uint64_t d = static_cast<uint64_t>(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace

uint64_t RoundUpPow2(uint64_t v, uint64_t lo, uint64_t hi) {
  if (v <= lo) return lo;
  if (v >= hi) return hi;
  uint64_t p = lo;
  while (p < v) p <<= 1;
  return p;
}

void ParseConfig(GetEnvFn getenv_fn, Config* c) {
  *c = Config();
  const char* v = getenv_fn("HEAPWATCH_DISABLE");
  c->disabled = v && v[0] && !Equal(v, "0");

  uint64_t n = 0;
  if (ParseU64(getenv_fn("HEAPWATCH_SAMPLE_BYTES"), &n) && n >= 1) c->sample_bytes = n;
  if (ParseU64(getenv_fn("HEAPWATCH_MAX_FRAMES"), &n)) {
    if (n < 1) n = 1;
    if (n > wire::kMaxFrames) n = wire::kMaxFrames;
    c->max_frames = static_cast<uint32_t>(n);
  }
  v = getenv_fn("HEAPWATCH_UNWIND");
  c->frame_pointers = v && (Equal(v, "fp") || Equal(v, "framepointer"));
  // libunwind's trace caches (unwinder.h): bounded at the default rate, where
  // a thread samples every 512 KiB; heavy sampling (R < 64 KiB, a debugging
  // mode that already maps tables of up to 128 MiB) would otherwise step on
  // most allocations of every thread past the cap, ~40 us each.
  c->unwind_caches = c->sample_bytes >= 65536 ? kDefaultUnwindCaches : kMaxUnwindCaches;
  if (ParseU64(getenv_fn("HEAPWATCH_UNWIND_CACHES"), &n)) {
    c->unwind_caches = static_cast<uint32_t>(n > kMaxUnwindCaches ? kMaxUnwindCaches : n);
  }

  v = getenv_fn("HEAPWATCH_SOCKET");
  if (v && v[0] && Length(v) < sizeof(c->socket_path)) {
    memcpy(c->socket_path, v, Length(v) + 1);
  }

  // Live table: about one sample per R bytes of live heap (blocks smaller
  // than R). 64 Ki slots are a quarter full at an 8 GiB heap at the default
  // rate, where probe runs stay short; every-allocation mode (small R) gets
  // 4 Mi slots (128 MiB of address space, touched only as used).
  uint64_t derived = c->sample_bytes >= 65536 ? (1u << 16)
                     : c->sample_bytes >= 4096 ? (1u << 20)
                                               : (1u << 22);
  c->table_slots = derived;
  if (ParseU64(getenv_fn("HEAPWATCH_TABLE_SLOTS"), &n) && n > 0) {
    c->table_slots = RoundUpPow2(n, 1024, 1ull << 26);
  }
  // Ring: must absorb the samples of one sender period (a few ms).
  c->ring_slots = c->sample_bytes >= 65536 ? (1u << 13) : (1u << 18);
  if (ParseU64(getenv_fn("HEAPWATCH_RING_SLOTS"), &n) && n > 0) {
    c->ring_slots = RoundUpPow2(n, 64, 1u << 22);
  }
}

}  // namespace heapwatch::preload
