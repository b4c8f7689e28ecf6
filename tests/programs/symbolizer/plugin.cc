// Symbolizer fixture: a shared library the fixture program dlopens. The call
// through `capture` records a return address inside this library.
namespace plugin {

__attribute__((noinline)) void AllocateThing(void (*capture)()) {
  capture();  // @site:plugin
  asm volatile("" ::: "memory");
}

}  // namespace plugin

extern "C" __attribute__((visibility("default"))) void hwsym_plugin_run(void (*capture)()) {
  plugin::AllocateThing(capture);
}
