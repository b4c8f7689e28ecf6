#include "unwinder.h"

#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <time.h>

#include <atomic>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <heapwatch/wire.h>

extern "C" const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

namespace heapwatch::preload {
namespace {

bool g_frame_pointers = false;
uintptr_t g_skip_start = 0, g_skip_end = 0;
// False in a forked child until ProbeUnwinder has unwound once (unwinder.h).
std::atomic<bool> g_ready{true};
// When ProbeUnwinder began (CLOCK_MONOTONIC ns); 0 when not in it.
std::atomic<uint64_t> g_probe_started_ns{0};
constexpr uint64_t kProbeStuckNs = 200'000'000;

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Which of libunwind's two ways a thread unwinds with (see unwinder.h): it
// steps, and every kStepsPerTry samples tries to take a trace cache.
constexpr uint32_t kStepsPerTry = 16;
struct UnwindState {
  bool trace_cache;
  bool exiting;
  uint32_t steps;
  // The frame pointer walk's bounds: this thread's stack, [0, 0) until
  // known, and kNoStack if the thread's stack cannot be found.
  uintptr_t stack_lo, stack_hi;
};
constexpr uintptr_t kNoStack = 1;
__thread UnwindState t_unwind __attribute__((tls_model("initial-exec")));
uint32_t g_cache_limit = 0;
std::atomic<uint32_t> g_caches_in_use{0};
// Its destructor gives a thread's trace cache back when the thread exits
// (libunwind frees the cache itself from a destructor of its own).
pthread_key_t g_cache_key;
bool g_have_cache_key = false;

void ReleaseCache(void*) {
  // Anything this exiting thread still samples steps (libunwind may already
  // have freed the cache).
  t_unwind.trace_cache = false;
  t_unwind.exiting = true;
  g_caches_in_use.fetch_sub(1, std::memory_order_relaxed);
}

bool TakeCache() {
  if (!g_have_cache_key) return false;
  uint32_t n = g_caches_in_use.load(std::memory_order_relaxed);
  do {
    if (n >= g_cache_limit) return false;
  } while (!g_caches_in_use.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  if (pthread_setspecific(g_cache_key, &g_caches_in_use) != 0) {
    g_caches_in_use.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

// unw_step from here outwards: no trace cache, and ~300x the time of
// unw_backtrace (libunwind masks signals around its lookups, two syscalls a
// frame). The first pc is in this function, which the caller skips.
uint32_t StepBacktrace(void** out, uint32_t max) {
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) return 0;
  uint32_t n = 0;
  do {
    unw_word_t ip = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0 || ip == 0) break;
    out[n++] = reinterpret_cast<void*>(ip);
  } while (n < max && unw_step(&cursor) > 0);
  return n;
}

uint32_t LibunwindBacktrace(void** out, uint32_t max) {
  UnwindState& t = t_unwind;
  if (!t.trace_cache && !t.exiting && ++t.steps % kStepsPerTry == 0) t.trace_cache = TakeCache();
  if (t.trace_cache) {
    int n = unw_backtrace(out, static_cast<int>(max));
    return n > 0 ? static_cast<uint32_t>(n) : 0;
  }
  return StepBacktrace(out, max);
}

// Slack for the shim's own frames on top of the requested depth.
constexpr uint32_t kSkipSlack = 16;

// This thread's stack, from its pthread attributes (for the main thread glibc
// reads /proc/self/maps and allocates; the caller holds the guard).
bool StackBounds(uintptr_t* lo, uintptr_t* hi) {
  UnwindState& t = t_unwind;
  if (t.stack_hi == 0) {
    t.stack_lo = t.stack_hi = kNoStack;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      void* addr = nullptr;
      size_t size = 0;
      if (pthread_attr_getstack(&attr, &addr, &size) == 0 && size > 0) {
        t.stack_lo = reinterpret_cast<uintptr_t>(addr);
        t.stack_hi = t.stack_lo + size;
      }
      pthread_attr_destroy(&attr);
    }
  }
  *lo = t.stack_lo;
  *hi = t.stack_hi;
  return t.stack_hi != kNoStack;
}

// Each frame: [fp] = caller's fp, [fp+8] = return address. Every frame read
// lies on this thread's stack, above the last one and 8-aligned; the walk
// ends at the first that does not (code without frame pointers leaves any
// value in rbp). -1 where the walk cannot start: no known stack, or this
// frame is not on it (a signal handler on an alternate stack); the caller
// then unwinds with libunwind.
int WalkFramePointers(void** out, uint32_t max) {
  uintptr_t lo, hi;
  if (!StackBounds(&lo, &hi)) return -1;
  auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (fp < lo || fp > hi - 16) return -1;
  uint32_t n = 0;
  while (n < max) {
    const auto* frame = reinterpret_cast<const uintptr_t*>(fp);
    uintptr_t ret = frame[1];
    if (ret < 4096) break;
    out[n++] = reinterpret_cast<void*>(ret);
    uintptr_t next = frame[0];
    if (next <= fp || next > hi - 16 || (next & 7) != 0) break;
    fp = next;
  }
  return static_cast<int>(n);
}

}  // namespace

void SelfCodeRange(uintptr_t* start, uintptr_t* end) {
  const ElfW(Ehdr)* eh = &__ehdr_start;
  const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(reinterpret_cast<const char*>(eh) + eh->e_phoff);
  uintptr_t base = reinterpret_cast<uintptr_t>(eh);
  uintptr_t first_vaddr = UINTPTR_MAX;
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr < first_vaddr) first_vaddr = ph[i].p_vaddr;
  }
  *start = *end = 0;
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
    uintptr_t lo = base - first_vaddr + ph[i].p_vaddr;
    uintptr_t hi = lo + ph[i].p_memsz;
    if (*start == 0 || lo < *start) *start = lo;
    if (hi > *end) *end = hi;
  }
}

void InitUnwinder(bool frame_pointers, uintptr_t skip_start, uintptr_t skip_end,
                  uint32_t trace_caches) {
  g_frame_pointers = frame_pointers;
  g_skip_start = skip_start;
  g_skip_end = skip_end;
  // Also with frame pointers: the fallback where the walk cannot start.
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  g_cache_limit = trace_caches;
  g_have_cache_key = trace_caches > 0 && pthread_key_create(&g_cache_key, ReleaseCache) == 0;
}

uint32_t TraceCachesInUse() { return g_caches_in_use.load(std::memory_order_relaxed); }

void UnwinderForkChild() {
  // The child's only thread is the one that forked.
  g_caches_in_use.store(t_unwind.trace_cache ? 1 : 0, std::memory_order_relaxed);
  g_ready.store(false, std::memory_order_relaxed);
  g_probe_started_ns.store(0, std::memory_order_relaxed);
}

bool UnwinderReady() { return g_ready.load(std::memory_order_acquire); }

void ProbeUnwinder() {
  g_probe_started_ns.store(MonotonicNs(), std::memory_order_release);
  // unw_step takes libunwind's cache lock and glibc's dl_iterate_phdr lock
  // for each frame, as the application's threads would.
  void* pcs[4];
  StepBacktrace(pcs, 4);
  g_ready.store(true, std::memory_order_release);
  g_probe_started_ns.store(0, std::memory_order_release);
}

bool UnwinderProbeStuck() {
  uint64_t since = g_probe_started_ns.load(std::memory_order_acquire);
  return since != 0 && MonotonicNs() - since > kProbeStuckNs;
}

uint32_t CaptureStack(uint64_t* pcs, uint32_t max) {
  void* raw[wire::kMaxFrames + kSkipSlack];
  if (max > wire::kMaxFrames) max = wire::kMaxFrames;
  uint32_t want = max + kSkipSlack;
  int walked = g_frame_pointers ? WalkFramePointers(raw, want) : -1;
  if (walked < 0 && !UnwinderReady()) return 0;
  uint32_t n = walked >= 0 ? static_cast<uint32_t>(walked) : LibunwindBacktrace(raw, want);
  if (n == 0) return 0;
  uint32_t first = 0;
  while (first < n) {
    auto pc = reinterpret_cast<uintptr_t>(raw[first]);
    if (pc < g_skip_start || pc >= g_skip_end) break;
    ++first;
  }
  uint32_t depth = 0;
  for (uint32_t i = first; i < n && depth < max; ++i) pcs[depth++] = reinterpret_cast<uintptr_t>(raw[i]);
  return depth;
}

}  // namespace heapwatch::preload
