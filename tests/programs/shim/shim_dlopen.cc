// Loads and unloads plugins at run time under the shim, for the module-map
// test (tests/e2e/test_shim_modules.py). Commands on stdin, one per line;
// each answers with one line:
//   o PATH          dlopen PATH (RTLD_NOW | RTLD_LOCAL)   -> "opened 0xLOAD_BASE"
//   a COUNT BYTES   COUNT blocks from the plugin's         -> "allocated"
//                   hw_plugin_alloc, kept live
//   f               free the plugin's blocks               -> "freed"
//   c               dlclose; reports whether the object    -> "closed unloaded" or
//                   really left the process                   "closed resident"
//   s PATH OLD NEW BYTES
//                   all at once, with no pause for the     -> "swapped 0xOLD_BASE
//                   shim's sender: OLD blocks from the         0xNEW_BASE unloaded"
//                   open plugin (kept live), dlclose it,       (or "resident")
//                   dlopen PATH, NEW blocks from that one
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

struct Plugin {
  void* handle = nullptr;
  PluginAlloc alloc = nullptr;
  char path[4096] = {};
};

// Returns the load base.
unsigned long Open(Plugin* p, const char* path) {
  snprintf(p->path, sizeof(p->path), "%s", path);
  p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
  if (p->handle == nullptr) Fail("dlopen", dlerror());
  p->alloc = reinterpret_cast<PluginAlloc>(dlsym(p->handle, "hw_plugin_alloc"));
  if (p->alloc == nullptr) Fail("dlsym", dlerror());
  link_map* map = nullptr;
  if (dlinfo(p->handle, RTLD_DI_LINKMAP, &map) != 0) Fail("dlinfo", dlerror());
  return static_cast<unsigned long>(map->l_addr);
}

void Allocate(Plugin* p, int count, size_t bytes) {
  if (p->alloc == nullptr || count < 0 || g_block_count + count > kMaxBlocks) Fail("alloc", "");
  for (int i = 0; i < count; ++i) g_blocks[g_block_count++] = p->alloc(bytes);
}

// Returns whether the object really left the process.
bool Close(Plugin* p) {
  if (p->handle == nullptr || dlclose(p->handle) != 0) Fail("dlclose", dlerror());
  p->handle = nullptr;
  p->alloc = nullptr;
  void* again = dlopen(p->path, RTLD_NOW | RTLD_NOLOAD);
  if (again != nullptr) dlclose(again);
  return again == nullptr;
}

}  // namespace

int main() {
  Plugin plugin;
  char path[4096] = {};
  char line[4200];
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof(line), stdin) != nullptr) {
    if (line[0] == 'o') {
      if (plugin.handle != nullptr || sscanf(line + 1, " %4095s", path) != 1) Fail("open", line);
      printf("opened 0x%lx\n", Open(&plugin, path));
    } else if (line[0] == 'a') {
      int count = 0;
      size_t bytes = 0;
      if (sscanf(line + 1, " %d %zu", &count, &bytes) != 2) Fail("alloc", line);
      Allocate(&plugin, count, bytes);
      printf("allocated\n");
    } else if (line[0] == 'f') {
      for (int i = 0; i < g_block_count; ++i) free(g_blocks[i]);
      g_block_count = 0;
      printf("freed\n");
    } else if (line[0] == 'c') {
      printf("closed %s\n", Close(&plugin) ? "unloaded" : "resident");
    } else if (line[0] == 's') {
      int old_count = 0, new_count = 0;
      size_t bytes = 0;
      if (plugin.handle == nullptr ||
          sscanf(line + 1, " %4095s %d %d %zu", path, &old_count, &new_count, &bytes) != 4) {
        Fail("swap", line);
      }
      link_map* map = nullptr;
      if (dlinfo(plugin.handle, RTLD_DI_LINKMAP, &map) != 0) Fail("dlinfo", dlerror());
      unsigned long old_base = static_cast<unsigned long>(map->l_addr);
      Allocate(&plugin, old_count, bytes);
      bool unloaded = Close(&plugin);
      unsigned long new_base = Open(&plugin, path);
      Allocate(&plugin, new_count, bytes);
      printf("swapped 0x%lx 0x%lx %s\n", old_base, new_base, unloaded ? "unloaded" : "resident");
    } else if (line[0] == 'q') {
      return 0;
    } else {
      Fail("command", line);
    }
    fflush(stdout);
  }
  return 0;
}
