#include "dl_functions.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>

#include "libc_functions.h"

namespace heapwatch::preload {
namespace {

// glibc's internal flag for a dlopen by a program (not by glibc itself): the
// object counts as opened, as a dlopen's would. With RTLD_NODELETE, a
// program's own dlopen and dlclose of libdl.so.2 cannot unload it from under
// the pointers below.
constexpr int kRtldDlopen = static_cast<int>(0x80000000u);

using OpenFn = void* (*)(const char*, int);
using SymFn = void* (*)(void*, const char*);
using ErrorFn = char* (*)();

// libdl.so.2's three, found once; threads that race store the same values.
enum : int { kNotLooked = 0, kFound = 1, kAbsent = 2 };
std::atomic<int> g_old_libdl{kNotLooked};
std::atomic<OpenFn> g_open{nullptr};
std::atomic<SymFn> g_sym{nullptr};
std::atomic<ErrorFn> g_error{nullptr};

// Whether libdl.so.2's functions are at hand (glibc before 2.34, a program
// that does not load libdl: the start's walk found no dlsym).
bool FindOldLibdl() {
  int state = g_old_libdl.load(std::memory_order_acquire);
  if (state != kNotLooked) return state == kFound;
  // glibc's loader calls for its own use (GLIBC_PRIVATE): in libc.so.6 from
  // 2.3 to 2.33, and never needed on a glibc that lacks them (there
  // libc.so.6 has dlopen itself).
  const LibcFunctions& libc = Libc();
  void* libdl = nullptr;
  if (libc.__libc_dlopen_mode && libc.__libc_dlsym) {
    libdl = libc.__libc_dlopen_mode("libdl.so.2", RTLD_LAZY | RTLD_NODELETE | kRtldDlopen);
  }
  bool found = false;
  if (libdl) {
    auto open = reinterpret_cast<OpenFn>(libc.__libc_dlsym(libdl, "dlopen"));
    auto sym = reinterpret_cast<SymFn>(libc.__libc_dlsym(libdl, "dlsym"));
    auto error = reinterpret_cast<ErrorFn>(libc.__libc_dlsym(libdl, "dlerror"));
    found = open && sym && error;
    if (found) {
      g_open.store(open, std::memory_order_relaxed);
      g_sym.store(sym, std::memory_order_relaxed);
      g_error.store(error, std::memory_order_relaxed);
    }
  }
  g_old_libdl.store(found ? kFound : kAbsent, std::memory_order_release);
  return found;
}

}  // namespace

void* DlOpen(const char* name, int flags) {
  if (const auto open = Libc().dlopen) return open(name, flags);
  return FindOldLibdl() ? g_open.load(std::memory_order_relaxed)(name, flags) : nullptr;
}

// With RTLD_NEXT, dlsym looks past the object its call returns to: the shim,
// whichever of the two makes the call.
void* DlSym(void* handle, const char* name) {
  if (const auto sym = Libc().dlsym) return sym(handle, name);
  return FindOldLibdl() ? g_sym.load(std::memory_order_relaxed)(handle, name) : nullptr;
}

const char* DlError() {
  if (const auto error = Libc().dlerror) return error();
  if (FindOldLibdl()) return g_error.load(std::memory_order_relaxed)();
  return "libdl.so.2 cannot be loaded";
}

const char* MissingThreadFunction() {
  struct Needed {
    const void* function;
    const char* name;
  };
  const LibcFunctions& libc = Libc();
#define HW_NEEDED(name) {reinterpret_cast<const void*>(libc.name), #name},
  const Needed needed[] = {HW_NEEDED(pthread_create) HW_NEEDED(pthread_key_create)
                           HW_NEEDED(pthread_getspecific) HW_NEEDED(pthread_setspecific)
                           HW_NEEDED(pthread_attr_getstack) HW_NEEDED(pthread_attr_setstacksize)
                           HW_NEEDED(pthread_sigmask) HW_NEEDED(pthread_getattr_np)};
#undef HW_NEEDED
  for (const Needed& n : needed) {
    if (!n.function) return n.name;
  }
  return nullptr;
}

}  // namespace heapwatch::preload
