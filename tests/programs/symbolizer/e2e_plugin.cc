// The library hwsym_e2e_app dlopens: allocates from a named function.
#include <stdlib.h>

namespace plugin_e2e {

__attribute__((noinline)) void* Grow(size_t bytes) {
  void* block = malloc(bytes);  // @site:e2e-plugin
  asm volatile("" ::: "memory");
  return block;
}

}  // namespace plugin_e2e

extern "C" __attribute__((visibility("default"))) void* hwsym_e2e_plugin_alloc(size_t bytes) {
  return plugin_e2e::Grow(bytes);
}
