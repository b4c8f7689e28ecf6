// Finding and loading libunwind (unwinder_load.cc loads it for the unwinder).
//
// libunwind, loaded with dlopen rather than linked: the libunwind.so.8 that
// travels with the shim is Debian 12's and needs glibc 2.34, and a preloaded
// object whose dependencies need a newer glibc than the application's stops
// the application from starting (ld.so: "version `GLIBC_2.34' not found",
// exit 1). A dlopen that fails only leaves the shim off. The names are
// libunwind's own (UNW_LOCAL_ONLY's macros spell them out).
#ifndef HEAPWATCH_PRELOAD_LIBUNWIND_LOADER_H_
#define HEAPWATCH_PRELOAD_LIBUNWIND_LOADER_H_

#define UNW_LOCAL_ONLY
#include <libunwind.h>

namespace heapwatch::preload {

// The entry points the shim calls, as dlsym found them.
struct Libunwind {
  int (*getcontext)(unw_context_t*);
  int (*init_local)(unw_cursor_t*, unw_context_t*);
  int (*get_reg)(unw_cursor_t*, unw_regnum_t, unw_word_t*);
  int (*step)(unw_cursor_t*);
  int (*backtrace)(void**, int);
  int (*set_caching_policy)(unw_addr_space_t, unw_caching_policy_t);
  void (*flush_cache)(unw_addr_space_t, unw_word_t, unw_word_t);
  unw_addr_space_t* local_addr_space;
};

// Loads libunwind (and liblzma, its dependency) into *out: the copy beside
// the shim, else the system's. False, with why the first could not be used
// in *error (static storage), if none can.
bool LoadLibunwind(Libunwind* out, const char** error);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_LIBUNWIND_LOADER_H_
