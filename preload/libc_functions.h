// glibc's functions that the shim calls once a process samples, or has
// something to say, or never on most starts: not imported, but found by the
// start's walk over the loaded objects (real_allocator.cc, FindDefinitions),
// as ld.so would bind them (the first definition in load order, the shim's
// own skipped; the default version).
//
// Each import is a symbol lookup by ld.so at every exec under the shim, also
// in the processes that never sample (most of what a shell or a build
// runs): ~860 instructions each, with the pages of libc's symbol tables it
// reads. The shim's 41 imports were 35,000 of the 188,000 instructions of
// /bin/true under it (an empty library with the same imports, callgrind),
// and the walk's lookup of a name is ~150. What stays imported: the calls of
// every start (getenv, __register_atfork, dl_iterate_phdr, clock_gettime,
// errno's location) and those the compiler makes (memcpy, memmove, memset).
//
// Null where no object loaded at start defines one: before glibc 2.34 the
// pthread_* and dl* functions live in libpthread.so.0 and libdl.so.2, which
// the shim does not load (dl_functions.h says what it does then).
#ifndef HEAPWATCH_PRELOAD_LIBC_FUNCTIONS_H_
#define HEAPWATCH_PRELOAD_LIBC_FUNCTIONS_H_

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

// glibc's first cleanup buffers (today's headers declare only the struct in
// C++): longjmp and siglongjmp call the routine of each buffer in a frame
// they jump over, and pthread_exit and cancellation do the same as they
// unwind (recorder.cc, SampleScope).
using PthreadCleanupPushFn = void (*)(_pthread_cleanup_buffer*, void (*)(void*), void*);
using PthreadCleanupPopFn = void (*)(_pthread_cleanup_buffer*, int);
// glibc's private loader calls (GLIBC_PRIVATE, 2.3 to 2.33: dl_functions.cc).
using LibcDlopenModeFn = void* (*)(const char*, int);
using LibcDlsymFn = void* (*)(void*, const char*);
using GnuGetLibcVersionFn = const char* (*)();
using CloneFn = int (*)(int (*)(void*), void*, int, void*, ...);
using SnprintfFn = int (*)(char*, size_t, const char*, ...);

// X(field, type): each a name the walk looks up.
#define HEAPWATCH_LIBC_FUNCTIONS(X)                                                          \
  X(pthread_create, decltype(&::pthread_create))                                           \
  X(pthread_attr_init, decltype(&::pthread_attr_init))                                     \
  X(pthread_attr_destroy, decltype(&::pthread_attr_destroy))                               \
  X(pthread_attr_setdetachstate, decltype(&::pthread_attr_setdetachstate))                 \
  X(pthread_attr_setstacksize, decltype(&::pthread_attr_setstacksize))                     \
  X(pthread_attr_getstack, decltype(&::pthread_attr_getstack))                             \
  X(pthread_getattr_np, decltype(&::pthread_getattr_np))                                   \
  X(pthread_self, decltype(&::pthread_self))                                               \
  X(pthread_sigmask, decltype(&::pthread_sigmask))                                         \
  X(pthread_setcancelstate, decltype(&::pthread_setcancelstate))                           \
  X(_pthread_cleanup_push, PthreadCleanupPushFn)                                           \
  X(_pthread_cleanup_pop, PthreadCleanupPopFn)                                             \
  X(pthread_key_create, decltype(&::pthread_key_create))                                   \
  X(pthread_getspecific, decltype(&::pthread_getspecific))                                 \
  X(pthread_setspecific, decltype(&::pthread_setspecific))                                 \
  X(pthread_mutex_lock, decltype(&::pthread_mutex_lock))                                   \
  X(pthread_mutex_unlock, decltype(&::pthread_mutex_unlock))                               \
  X(clone, CloneFn)                                                                        \
  X(setenv, decltype(&::setenv))                                                           \
  X(snprintf, SnprintfFn)                                                                  \
  X(dlopen, decltype(&::dlopen))                                                           \
  X(dlsym, decltype(&::dlsym))                                                             \
  X(dlerror, decltype(&::dlerror))                                                         \
  X(__libc_dlopen_mode, LibcDlopenModeFn)                                                  \
  X(__libc_dlsym, LibcDlsymFn)                                                             \
  X(gnu_get_libc_version, GnuGetLibcVersionFn)

// And the definitions after the shim's (dlsym(RTLD_NEXT)'s) of two it
// interposes, which it needs from its start (syscall_interposer.cc).
using SyscallFn = long (*)(long, ...);
using PrctlFn = int (*)(int, unsigned long, unsigned long, unsigned long, unsigned long);
#define HEAPWATCH_NEXT_FUNCTIONS(X) X(syscall, SyscallFn) X(prctl, PrctlFn)

namespace heapwatch::preload {

struct LibcFunctions {
#define HEAPWATCH_LIBC_FIELD(name, type) type name;
  HEAPWATCH_LIBC_FUNCTIONS(HEAPWATCH_LIBC_FIELD)
  struct {
    HEAPWATCH_NEXT_FUNCTIONS(HEAPWATCH_LIBC_FIELD)
  } after_shim;
#undef HEAPWATCH_LIBC_FIELD
};

// Set once, by the walk at start (or at the first call here, in a process
// where the shim's constructor has not run yet: another object's, a test's).
extern LibcFunctions g_libc __attribute__((visibility("hidden")));
bool ResolveLibcFunctions();
inline const LibcFunctions& Libc() {
  ResolveLibcFunctions();
  return g_libc;
}

// sigfillset, not imported: every bit. pthread_sigmask leaves glibc's own two
// (SIGCANCEL, SIGSETXID) unblocked, as it does from sigfillset's set.
inline void FillSignalSet(sigset_t* set) { memset(set, 0xff, sizeof(*set)); }

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_LIBC_FUNCTIONS_H_
