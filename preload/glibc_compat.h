// Included first in every source of the shim (-include, CMakeLists.txt).
//
// The shim is preloaded into application images we do not build. A preloaded
// object that needs a newer glibc than the image's stops the application from
// starting: ld.so fails with "version `GLIBC_2.34' not found" and exit 1,
// and in Kubernetes the pod restarts in a loop. So the shim binds each glibc
// function it calls to its oldest version that means the same, and needs
// nothing newer than GLIBC_2.17 (tests/e2e/test_shim_api.py checks).
// libunwind is loaded with dlopen for the same reason (libunwind_loader.h).
//
// Before glibc 2.34 the pthread_* and dl* functions below lived in
// libpthread.so.0 and libdl.so.2. The shim names neither as DT_NEEDED (empty
// stubs since 2.34, and each exec would load them: dl_functions.h) and
// references these weakly: ld.so binds a versioned symbol in whichever
// loaded object defines it, and leaves it null where none does (an old
// glibc, a program that loads neither library). dl_functions.h says what the
// shim does then.
#ifndef HEAPWATCH_PRELOAD_GLIBC_COMPAT_H_
#define HEAPWATCH_PRELOAD_GLIBC_COMPAT_H_

#ifdef __x86_64__
#define HEAPWATCH_GLIBC_OLD(name) __asm__(".symver " #name "," #name "@GLIBC_2.2.5")
HEAPWATCH_GLIBC_OLD(dlopen);
HEAPWATCH_GLIBC_OLD(dlsym);
HEAPWATCH_GLIBC_OLD(dlerror);
HEAPWATCH_GLIBC_OLD(pthread_create);
HEAPWATCH_GLIBC_OLD(pthread_join);
HEAPWATCH_GLIBC_OLD(pthread_key_create);
HEAPWATCH_GLIBC_OLD(pthread_getspecific);
HEAPWATCH_GLIBC_OLD(pthread_setspecific);
HEAPWATCH_GLIBC_OLD(pthread_attr_getstack);
HEAPWATCH_GLIBC_OLD(pthread_attr_setstacksize);
// Not where the shim defines it (getattr_interposer.cc): a definition is the
// shim's own, not glibc's old one.
#ifndef HEAPWATCH_DEFINES_PTHREAD_GETATTR_NP
HEAPWATCH_GLIBC_OLD(pthread_getattr_np);
#endif
HEAPWATCH_GLIBC_OLD(pthread_sigmask);
HEAPWATCH_GLIBC_OLD(_pthread_cleanup_push);
HEAPWATCH_GLIBC_OLD(_pthread_cleanup_pop);
#undef HEAPWATCH_GLIBC_OLD
#endif

// libpthread.so.0's before 2.34 that the shim needs to profile (the
// signal mask around its sender's start, a thread to load libunwind, the
// unwinder's per-thread state and stack bounds): the weak
// references below, and what dl_functions.cc checks for at start.
// pthread_getattr_np too, which is not listed: getattr_interposer.cc defines
// it, and there it must not be weak.
#define HEAPWATCH_LIBPTHREAD_CALLS(X)                                                       \
  X(pthread_create) X(pthread_key_create) X(pthread_getspecific)                           \
  X(pthread_setspecific) X(pthread_attr_getstack) X(pthread_attr_setstacksize)             \
  X(pthread_sigmask)
#define HEAPWATCH_PRAGMA_WEAK(name) _Pragma(HEAPWATCH_PRAGMA_TEXT(weak name))
#define HEAPWATCH_PRAGMA_TEXT(text) #text

#pragma weak dlopen
#pragma weak dlsym
#pragma weak dlerror
HEAPWATCH_LIBPTHREAD_CALLS(HEAPWATCH_PRAGMA_WEAK)
#ifndef HEAPWATCH_DEFINES_PTHREAD_GETATTR_NP
#pragma weak pthread_getattr_np
#endif

#endif  // HEAPWATCH_PRELOAD_GLIBC_COMPAT_H_
