#include "libunwind_loader.h"

#include <dlfcn.h>
#include <stdio.h>

#include <initializer_list>
#include <type_traits>

#include "dl_functions.h"
#include "libc_functions.h"

namespace heapwatch::preload {
namespace {

#define HW_NAME(macro) HW_NAME2(macro)
#define HW_NAME2(name) #name

// libunwind's functions from the library `h`; false if one is missing.
bool FindFunctions(void* h, Libunwind* lu) {
  bool ok = true;
  auto find = [&](auto* slot, const char* name) {
    void* f = DlSym(h, name);
    ok = ok && f;
    *slot = reinterpret_cast<std::remove_pointer_t<decltype(slot)>>(f);
  };
  find(&lu->getcontext, HW_NAME(unw_tdep_getcontext));  // unw_getcontext(uc) is a macro
  find(&lu->init_local, HW_NAME(unw_init_local));
  find(&lu->get_reg, HW_NAME(unw_get_reg));
  find(&lu->step, HW_NAME(unw_step));
  find(&lu->backtrace, "unw_backtrace");
  find(&lu->set_caching_policy, HW_NAME(unw_set_caching_policy));
  find(&lu->flush_cache, HW_NAME(unw_flush_cache));
  find(&lu->local_addr_space, HW_NAME(unw_local_addr_space));
  if (!ok) DlError();  // no error left for the program
  return ok;
}

}  // namespace

bool LoadLibunwind(Libunwind* out, const char** error) {
  // libunwind's own dependency first: dlopen looks for the library in the
  // shim's DT_RPATH (its directory, where the copies travel), but not for
  // the library's dependencies, which an image need not have. Once loaded it
  // is found by its soname. Absent is fine where the system has one.
  if (!DlOpen("liblzma.so.5", RTLD_LAZY | RTLD_LOCAL)) DlError();
  // First by name, which finds the copy beside the shim. That one needs
  // glibc 2.34; an older image may have a libunwind of its own, built for
  // its glibc (Debian 11's libunwind8 profiled perl so, by hand): then its
  // usual places, by path.
  // RTLD_LOCAL: its _Unwind_* stay out of the application's lookups.
  // RTLD_LAZY: bound as when it was the shim's DT_NEEDED (RTLD_NOW added
  // ~40k instructions to every process's start, callgrind of /bin/true).
  static char message[256];  // why the first could not be used
  message[0] = 0;
  for (const char* name : {"libunwind.so.8", "/usr/lib/x86_64-linux-gnu/libunwind.so.8",
                           "/lib/x86_64-linux-gnu/libunwind.so.8", "/usr/lib64/libunwind.so.8"}) {
    void* h = DlOpen(name, RTLD_LAZY | RTLD_LOCAL);
    Libunwind lu;
    if (h && FindFunctions(h, &lu)) {
      *out = lu;
      return true;
    }
    if (!message[0]) {
      Libc().snprintf(message, sizeof(message), "%s",
                      h ? "libunwind.so.8 lacks the local unwinder's entry points" : DlError());
    } else if (!h) {
      DlError();
    }
  }
  *error = message;
  return false;
}

}  // namespace heapwatch::preload
