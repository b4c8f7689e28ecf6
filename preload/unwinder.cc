#include "unwinder.h"

#include <elf.h>
#include <link.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <heapwatch/wire.h>

extern "C" const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

namespace heapwatch::preload {
namespace {

bool g_frame_pointers = false;
uintptr_t g_skip_start = 0, g_skip_end = 0;

// Slack for the shim's own frames on top of the requested depth.
constexpr uint32_t kSkipSlack = 16;

uint32_t WalkFramePointers(void** out, uint32_t max) {
  // Each frame: [fp] = caller's fp, [fp+8] = return address. Stop at anything
  // implausible: the chain must grow upwards, stay aligned and stay close.
  auto* fp = static_cast<uintptr_t*>(__builtin_frame_address(0));
  uint32_t n = 0;
  while (n < max && fp) {
    uintptr_t ret = fp[1];
    if (ret < 4096) break;
    out[n++] = reinterpret_cast<void*>(ret);
    auto* next = reinterpret_cast<uintptr_t*>(fp[0]);
    if (next <= fp || (reinterpret_cast<uintptr_t>(next) & 7) != 0 ||
        reinterpret_cast<uintptr_t>(next) - reinterpret_cast<uintptr_t>(fp) > (8u << 20)) {
      break;
    }
    fp = next;
  }
  return n;
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

void InitUnwinder(bool frame_pointers, uintptr_t skip_start, uintptr_t skip_end) {
  g_frame_pointers = frame_pointers;
  g_skip_start = skip_start;
  g_skip_end = skip_end;
  if (!frame_pointers) unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
}

uint32_t CaptureStack(uint64_t* pcs, uint32_t max) {
  void* raw[wire::kMaxFrames + kSkipSlack];
  if (max > wire::kMaxFrames) max = wire::kMaxFrames;
  uint32_t want = max + kSkipSlack;
  uint32_t n = g_frame_pointers ? WalkFramePointers(raw, want)
                                : static_cast<uint32_t>(unw_backtrace(raw, static_cast<int>(want)));
  if (static_cast<int32_t>(n) <= 0) return 0;
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
