// A plugin for shim_dlopen whose constructor keeps 32 blocks of 16 MiB + 7
// bytes, each touched only at its start: memory a program takes inside its
// dlopen of the plugin, with the loader's lock held. Its hw_plugin_alloc
// (which shim_dlopen looks up) is plain malloc.
#include <stdlib.h>
#include <string.h>

namespace {

void* g_kept[32];

__attribute__((noinline)) void KeepBlocks() {
  for (void*& block : g_kept) {
    block = malloc((16u << 20) + 7);
    if (block != nullptr) memset(block, 0x5a, 64);
    asm volatile("" ::: "memory");  // a real call, a real frame
  }
}

__attribute__((constructor)) void AtLoad() { KeepBlocks(); }

}  // namespace

extern "C" __attribute__((visibility("default"))) void* hw_plugin_alloc(size_t bytes) { return malloc(bytes); }
