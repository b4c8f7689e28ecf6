// Symbolizer fixture: records return addresses at known call sites and prints
// them with the load bias of each module, so tests check the symbolizer
// against what a real process saw. Lines the tests look up carry an
// "@site:NAME" marker; keep each marker on the line of the call it names.
//
// Output, one record per line:
//   module main|plugin <load bias hex> <path>
//   site main|plugin <name> <return address hex>
//   function main|plugin <name> <entry address hex>
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#ifndef HWSYM_VARIANT
#define HWSYM_VARIANT 1
#endif

namespace {

struct Site {
  const char* module;
  const char* name;
  void* return_address;
};
Site g_sites[16];
int g_site_count = 0;
const char* g_current_site = "";
const char* g_current_module = "main";

}  // namespace

// The return address of Capture's caller: the call site in the caller's code
// (or in code inlined into it), as an unwinder would see it.
extern "C" __attribute__((noinline)) void hwsym_capture() {
  if (g_site_count < 16) {
    g_sites[g_site_count++] = {g_current_module, g_current_site, __builtin_return_address(0)};
  }
  asm volatile("" ::: "memory");
}

static inline __attribute__((always_inline)) void InnerStep() {
  hwsym_capture();  // @site:inner
}

static inline __attribute__((always_inline)) void MiddleStep() {
  InnerStep();  // @site:middle
}

__attribute__((noinline)) void OuterEntry() {
  g_current_site = "inlined";
  MiddleStep();  // @site:outer
  asm volatile("" ::: "memory");
}

namespace fixture {

template <typename T>
struct Widget {
  __attribute__((noinline)) static T Build(T seed) {
    g_current_site = "widget";
    hwsym_capture();  // @site:widget
    return seed + HWSYM_VARIANT;
  }
};

}  // namespace fixture

namespace {

int PrintModule(dl_phdr_info* info, size_t, void* data) {
  const char* wanted = static_cast<const char*>(data);
  bool is_main = wanted == nullptr && info->dlpi_name[0] == '\0';
  bool is_plugin = wanted != nullptr && strcmp(info->dlpi_name, wanted) == 0;
  if (is_main || is_plugin) {
    printf("module %s %lx %s\n", is_main ? "main" : "plugin",
           static_cast<unsigned long>(info->dlpi_addr), is_main ? "-" : info->dlpi_name);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  OuterEntry();
  int built = fixture::Widget<int>::Build(41);
  dl_iterate_phdr(PrintModule, nullptr);
  printf("function main OuterEntry %lx\n", reinterpret_cast<unsigned long>(&OuterEntry));
  printf("function main fixture::Widget<int>::Build %lx\n",
         reinterpret_cast<unsigned long>(&fixture::Widget<int>::Build));

  if (argc > 1) {  // a plugin to dlopen
    void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      fprintf(stderr, "dlopen: %s\n", dlerror());
      return 1;
    }
    using PluginRun = void (*)(void (*)());
    auto run = reinterpret_cast<PluginRun>(dlsym(handle, "hwsym_plugin_run"));
    if (run == nullptr) {
      fprintf(stderr, "dlsym: %s\n", dlerror());
      return 1;
    }
    g_current_module = "plugin";
    g_current_site = "plugin";
    run(hwsym_capture);
    dl_iterate_phdr(PrintModule, argv[1]);
    printf("function plugin hwsym_plugin_run %lx\n", reinterpret_cast<unsigned long>(run));
  }
  for (int i = 0; i < g_site_count; ++i) {
    printf("site %s %s %lx\n", g_sites[i].module, g_sites[i].name,
           reinterpret_cast<unsigned long>(g_sites[i].return_address));
  }
  return built == 41 + HWSYM_VARIANT ? 0 : 1;
}
