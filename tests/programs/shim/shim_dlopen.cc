// Loads and unloads plugins at run time under the shim, for the module-map
// test (tests/e2e/test_shim_modules.py). Commands on stdin, one per line;
// each answers with one line:
//   o PATH          dlopen PATH (RTLD_NOW | RTLD_LOCAL)   -> "opened 0xLOAD_BASE"
//   a COUNT BYTES   COUNT blocks from the plugin's         -> "allocated"
//                   hw_plugin_alloc, kept live
//   f               free the plugin's blocks               -> "freed"
//   c               dlclose; reports whether the object    -> "closed unloaded" or
//                   really left the process                   "closed resident"
//   q               exit 0
// It prints "ready" first. Errors print "error ..." and exit 1.
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

using PluginAlloc = void* (*)(size_t);

constexpr int kMaxBlocks = 4096;
void* g_blocks[kMaxBlocks];
int g_block_count = 0;

[[noreturn]] void Fail(const char* what, const char* detail) {
  printf("error %s %s\n", what, detail ? detail : "");
  fflush(stdout);
  exit(1);
}

}  // namespace

int main() {
  void* handle = nullptr;
  PluginAlloc plugin_alloc = nullptr;
  char path[4096] = {};
  char line[4200];
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof(line), stdin) != nullptr) {
    if (line[0] == 'o') {
      if (handle != nullptr || sscanf(line + 1, " %4095s", path) != 1) Fail("open", line);
      handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) Fail("dlopen", dlerror());
      plugin_alloc = reinterpret_cast<PluginAlloc>(dlsym(handle, "hw_plugin_alloc"));
      if (plugin_alloc == nullptr) Fail("dlsym", dlerror());
      link_map* map = nullptr;
      if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0) Fail("dlinfo", dlerror());
      printf("opened 0x%lx\n", static_cast<unsigned long>(map->l_addr));
    } else if (line[0] == 'a') {
      int count = 0;
      size_t bytes = 0;
      if (plugin_alloc == nullptr || sscanf(line + 1, " %d %zu", &count, &bytes) != 2 ||
          count < 0 || g_block_count + count > kMaxBlocks) {
        Fail("alloc", line);
      }
      for (int i = 0; i < count; ++i) g_blocks[g_block_count++] = plugin_alloc(bytes);
      printf("allocated\n");
    } else if (line[0] == 'f') {
      for (int i = 0; i < g_block_count; ++i) free(g_blocks[i]);
      g_block_count = 0;
      printf("freed\n");
    } else if (line[0] == 'c') {
      if (handle == nullptr || dlclose(handle) != 0) Fail("dlclose", dlerror());
      handle = nullptr;
      plugin_alloc = nullptr;
      void* again = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
      printf("closed %s\n", again == nullptr ? "unloaded" : "resident");
      if (again != nullptr) dlclose(again);
    } else if (line[0] == 'q') {
      return 0;
    } else {
      Fail("command", line);
    }
    fflush(stdout);
  }
  return 0;
}
