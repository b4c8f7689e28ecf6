// Symbolizer end-to-end fixture: allocates from an always_inline chain (and,
// with --plugin, from a dlopen'ed library) under the shim, keeps the blocks
// live, and sleeps so the collector can profile it. With --wait-file it
// allocates only once that file exists, so a test can replace the binary on
// disk first. Lines the test checks carry "@site:" markers.
//
//   hwsym_e2e_app [--plugin LIB] [--wait-file PATH] [--seconds N]
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef HWSYM_E2E_VARIANT
#define HWSYM_E2E_VARIANT 1
#endif

namespace {

constexpr int kBlocks = 64;
constexpr size_t kBlockBytes = 16384 * HWSYM_E2E_VARIANT;

}  // namespace

// External linkage, so the compiler cannot prove the blocks unused and drop
// the malloc calls (it does for an anonymous-namespace array nobody reads).
void* g_blocks[2 * kBlocks];
int g_count = 0;

static inline __attribute__((always_inline)) void InnerAlloc(size_t bytes) {
  g_blocks[g_count++] = malloc(bytes);  // @site:e2e-inner
}

static inline __attribute__((always_inline)) void MiddleAlloc(size_t bytes) {
  InnerAlloc(bytes);  // @site:e2e-middle
  asm volatile("" ::: "memory");
}

__attribute__((noinline)) void OuterAlloc(size_t bytes) {
  MiddleAlloc(bytes);  // @site:e2e-outer
  asm volatile("" ::: "memory");
}

int main(int argc, char** argv) {
  const char* plugin = nullptr;
  const char* wait_file = nullptr;
  int seconds = 30;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--plugin") == 0) plugin = argv[i + 1];
    if (strcmp(argv[i], "--wait-file") == 0) wait_file = argv[i + 1];
    if (strcmp(argv[i], "--seconds") == 0) seconds = atoi(argv[i + 1]);
  }
  using PluginAlloc = void* (*)(size_t);
  PluginAlloc plugin_alloc = nullptr;
  if (plugin != nullptr) {
    void* handle = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      fprintf(stderr, "dlopen: %s\n", dlerror());
      return 1;
    }
    plugin_alloc = reinterpret_cast<PluginAlloc>(dlsym(handle, "hwsym_e2e_plugin_alloc"));
    if (plugin_alloc == nullptr) return 1;
  }
  for (int waited = 0; wait_file != nullptr && access(wait_file, F_OK) != 0; ++waited) {
    if (waited > 2000) return 1;
    usleep(10000);
  }
  for (int i = 0; i < kBlocks; ++i) {
    OuterAlloc(kBlockBytes);
    if (plugin_alloc != nullptr) g_blocks[g_count++] = plugin_alloc(kBlockBytes);
  }
  printf("ready\n");
  fflush(stdout);
  sleep(static_cast<unsigned>(seconds));
  return 0;
}
