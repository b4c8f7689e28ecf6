// jemalloc's own API (mallocx, rallocx, xallocx, dallocx, sdallocx), as a
// service linked against jemalloc uses it (folly's sized frees and in-place
// growth, for one), mixed with the standard calls on the same blocks.
//
// Prints what it observes and never an address, so the output must be the
// same with and without the shim. Marker allocations have recognisable sizes
// (test_shim_allocators.py, JemallocApiTest, lists them and what happens to
// each); the churn's blocks (sizes 100,000..100,999) are all freed again,
// through every free of the API, so none may stay live in the shim's table.
//
// Built two ways: linked against jemalloc (the API is jemalloc's), and with
// SHIM_JEMALLOC_PROBE, not linked against it, looking the API up at run time
// as programs that detect jemalloc do: over another allocator the names are
// then the shim's own (its stand-ins built on that allocator), or absent
// without the shim.
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHIM_JEMALLOC_PROBE
#include <jemalloc/jemalloc.h>
#else
#include <strings.h>
#define MALLOCX_LG_ALIGN(la) ((int)(la))
#define MALLOCX_ALIGN(a) ((int)(ffs((int)(a)) - 1))
#define MALLOCX_ZERO ((int)0x40)
#define MALLOCX_TCACHE_NONE ((int)(1 << 8))
#endif

namespace {

using MallocxFn = void* (*)(size_t, int);
using RallocxFn = void* (*)(void*, size_t, int);
using XallocxFn = size_t (*)(void*, size_t, size_t, int);
using DallocxFn = void (*)(void*, int);
using SdallocxFn = void (*)(void*, size_t, int);

struct Api {
  MallocxFn mallocx;
  RallocxFn rallocx;
  XallocxFn xallocx;
  DallocxFn dallocx;
  SdallocxFn sdallocx;
};

bool FindApi(Api* api) {
#ifndef SHIM_JEMALLOC_PROBE
  *api = {mallocx, rallocx, xallocx, dallocx, sdallocx};
#else
  api->mallocx = reinterpret_cast<MallocxFn>(dlsym(RTLD_DEFAULT, "mallocx"));
  api->rallocx = reinterpret_cast<RallocxFn>(dlsym(RTLD_DEFAULT, "rallocx"));
  api->xallocx = reinterpret_cast<XallocxFn>(dlsym(RTLD_DEFAULT, "xallocx"));
  api->dallocx = reinterpret_cast<DallocxFn>(dlsym(RTLD_DEFAULT, "dallocx"));
  api->sdallocx = reinterpret_cast<SdallocxFn>(dlsym(RTLD_DEFAULT, "sdallocx"));
#endif
  return api->mallocx && api->rallocx && api->xallocx && api->dallocx && api->sdallocx;
}

constexpr size_t kMarker = 2000000;  // marker k: kMarker + k bytes
constexpr size_t kChurnBase = 100000;

int g_failures = 0;
void Check(bool ok, const char* what) {
  printf("%s: %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++g_failures;
}

bool AllBytes(const void* p, size_t n, unsigned char c) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != c) return false;
  }
  return true;
}

bool Aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

// Each marker's story; the test knows it by the sizes.
void Markers(const Api& je) {
  void* p = malloc(kMarker + 0);
  memset(p, 1, kMarker + 0);
  je.sdallocx(p, kMarker + 0, 0);  // malloc, then a sized free

  p = malloc(kMarker + 1);
  je.dallocx(p, 0);

  p = je.mallocx(kMarker + 2, 0);
  Check(p != nullptr, "mallocx");
  free(p);  // mallocx, then free

  p = je.mallocx(kMarker + 3, MALLOCX_ALIGN(4096) | MALLOCX_ZERO);
  Check(p && Aligned(p, 4096) && AllBytes(p, kMarker + 3, 0), "mallocx aligned and zeroed");
  je.sdallocx(p, kMarker + 3, MALLOCX_ALIGN(4096));

  // rallocx to a bigger block (moves), then a free of the new one.
  char* c = static_cast<char*>(calloc(1, kMarker + 4));
  memset(c, 5, kMarker + 4);
  c = static_cast<char*>(je.rallocx(c, 2 * kMarker + 5, MALLOCX_TCACHE_NONE));
  Check(c && AllBytes(c, kMarker + 4, 5), "rallocx keeps the contents");
  je.dallocx(c, MALLOCX_TCACHE_NONE);

  // xallocx within the block's size class: in place, so the same address
  // now holds a block of the new size.
  p = je.mallocx(kMarker + 6, 0);
  size_t usable = je.xallocx(p, kMarker + 7, 0, 0);
  Check(usable >= kMarker + 7, "xallocx grows in place within the size class");
  je.sdallocx(p, kMarker + 7, 0);

  // xallocx that cannot grow: nothing changes, the block is still marker 8.
  p = je.mallocx(kMarker + 8, 0);
  usable = je.xallocx(p, size_t{1} << 40, 0, 0);
  Check(usable >= kMarker + 8 && usable < (size_t{1} << 40), "xallocx that cannot grow keeps the block");
  je.dallocx(p, 0);

  // Kept: live at exit.
  static void* kept = je.mallocx(kMarker + 9, MALLOCX_LG_ALIGN(6));
  Check(kept && Aligned(kept, 64), "mallocx with MALLOCX_LG_ALIGN");

  // rallocx that fails leaves the block as it was: still marker 10.
  p = malloc(kMarker + 10);
  memset(p, 10, kMarker + 10);
  void* q = je.rallocx(p, size_t{1} << 62, 0);
  Check(q == nullptr && AllBytes(p, kMarker + 10, 10), "rallocx that fails keeps the block");
  je.sdallocx(p, kMarker + 10, 0);
}

// Blocks in every combination of the API's allocations and frees, all freed.
void Churn(const Api& je, int rounds) {
  constexpr int kLive = 64;
  void* blocks[kLive] = {};
  size_t sizes[kLive] = {};
  uint32_t seed = 12345;
  auto next = [&seed] { return seed = seed * 1103515245u + 12345u; };
  auto release = [&](int i) {
    if (!blocks[i]) return;
    switch (next() >> 16 & 3) {
      case 0: free(blocks[i]); break;
      case 1: je.dallocx(blocks[i], 0); break;
      default: je.sdallocx(blocks[i], sizes[i], 0); break;
    }
    blocks[i] = nullptr;
  };
  uint64_t checksum = 0;
  for (int r = 0; r < rounds; ++r) {
    int i = static_cast<int>(next() >> 16) % kLive;
    size_t size = kChurnBase + (next() >> 16) % 1000;
    switch (next() >> 16 & 3) {
      case 0:
        release(i);
        blocks[i] = malloc(size);
        break;
      case 1:
        release(i);
        blocks[i] = je.mallocx(size, (next() >> 16 & 1) ? MALLOCX_ZERO : 0);
        break;
      case 2:
        if (blocks[i]) {
          void* q = je.rallocx(blocks[i], size, 0);
          if (!q) continue;
          blocks[i] = q;
        } else {
          blocks[i] = malloc(size);
        }
        break;
      default:
        if (blocks[i] && je.xallocx(blocks[i], size, 0, 0) >= size) {
          break;  // resized in place
        }
        release(i);
        blocks[i] = je.mallocx(size, 0);
        break;
    }
    sizes[i] = size;
    static_cast<char*>(blocks[i])[size - 1] = static_cast<char>(r);
    checksum += static_cast<unsigned char>(static_cast<char*>(blocks[i])[size - 1]);
  }
  for (int i = 0; i < kLive; ++i) release(i);
  printf("churn %d rounds, checksum %llu\n", rounds, static_cast<unsigned long long>(checksum));
}

}  // namespace

int main(int argc, char** argv) {
  Api je;
  if (!FindApi(&je)) {
    puts("no jemalloc API");
    return 0;
  }
  puts("jemalloc API found");
  Markers(je);
  Churn(je, argc > 1 ? atoi(argv[1]) : 20000);
  return g_failures == 0 ? 0 : 1;
}
