// pthread_getattr_np, passed through with a mark. glibc holds a thread's own
// lock (its struct pthread's, not recursive) while it reallocs in there, and
// a sample of that realloc, if it was the thread's first, called
// pthread_getattr_np again to find the thread's stack (unwinder.cc,
// LearnStack): the thread waited for its own lock for good. The JVM and
// Rust's std call it at every thread's start; a JVM under the shim at R = 1
// hung at its start (tests/e2e/test_shim_api.py,
// test_threads_that_ask_for_their_attributes). While the mark is set, a
// sample does not learn the stack.
#include <errno.h>
#include <pthread.h>

#include <atomic>

#include "next_function.h"
#include "unwinder.h"

#define HW_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using GetattrFn = int (*)(pthread_t, pthread_attr_t*);
std::atomic<GetattrFn> g_real_getattr{nullptr};

}  // namespace

HW_EXPORT int pthread_getattr_np(pthread_t thread, pthread_attr_t* attr) {
  heapwatch::preload::EnterThreadAttributes();  // before dlsym, which may allocate
  GetattrFn real = heapwatch::preload::NextFunction(&g_real_getattr, "pthread_getattr_np");
  int rc = real ? real(thread, attr) : ENOSYS;
  heapwatch::preload::LeaveThreadAttributes();
  return rc;
}
