// The next definition of a function the shim interposes (dlsym(RTLD_NEXT),
// through DlSym: dl_functions.h), for the interposers that only wrap
// glibc's: dlclose, pipe2, pthread_getattr_np. Looked up at the first call
// and kept; two threads may both look it up, and they store the same
// pointer. (The allocation API has its own resolution, with a bootstrap
// arena: real_allocator.h.)
#ifndef HEAPWATCH_PRELOAD_NEXT_FUNCTION_H_
#define HEAPWATCH_PRELOAD_NEXT_FUNCTION_H_

#include <dlfcn.h>

#include <atomic>

#include "dl_functions.h"

namespace heapwatch::preload {

// `name`'s next definition, kept in `slot`; nullptr if there is none (looked
// up again at the next call).
template <typename F>
F NextFunction(std::atomic<F>* slot, const char* name) {
  F f = slot->load(std::memory_order_acquire);
  if (!f) {
    f = reinterpret_cast<F>(DlSym(RTLD_NEXT, name));
    if (f) slot->store(f, std::memory_order_release);
  }
  return f;
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_NEXT_FUNCTION_H_
