// A plugin shim_dlopen loads at run time, built twice (SHIM_PLUGIN_NS =
// plugin_alpha, plugin_beta) so that the two libraries hold differently
// named functions. Plain C++ with no inline statics: nothing makes the
// object NODELETE, so dlclose really unmaps it.
#include <stdlib.h>
#include <string.h>

namespace SHIM_PLUGIN_NS {

__attribute__((noinline)) void* Hoard(size_t bytes) {
  void* block = malloc(bytes);
  if (block != nullptr) memset(block, 0x5a, bytes < 64 ? bytes : 64);
  asm volatile("" ::: "memory");  // a real call, a real frame
  return block;
}

}  // namespace SHIM_PLUGIN_NS

extern "C" __attribute__((visibility("default"))) void* hw_plugin_alloc(size_t bytes) {
  return SHIM_PLUGIN_NS::Hoard(bytes);
}
