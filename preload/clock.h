// A clock's time in nanoseconds, for every part of the shim (the recorder's
// event times, the sender's rounds), and the bounded waits of fork's
// prepare handler and the unwinder.
#ifndef HEAPWATCH_PRELOAD_CLOCK_H_
#define HEAPWATCH_PRELOAD_CLOCK_H_

#include <stdint.h>
#include <time.h>

#include "raw_syscall.h"

namespace heapwatch::preload {

// `clock`'s time in nanoseconds (clock_gettime).
inline uint64_t ClockNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// How long fork's prepare handler waits for what it waits for (other
// threads' unwinds and libunwind's load: unwinder_internal.h; the sender's
// gate: sender.cc), and the unwinder for its setup. Past it the fork goes on.
constexpr uint64_t kForkWaitNs = 1000000000;

// Yields until done() holds, or until the wait that *deadline bounds (0:
// not started; it then ends kForkWaitNs from now) is over: false then.
template <typename Done>
bool YieldUntil(Done done, uint64_t* deadline) {
  while (!done()) {
    const uint64_t now = ClockNs(CLOCK_MONOTONIC);
    if (*deadline == 0) *deadline = now + kForkWaitNs;
    if (now >= *deadline) return false;
    sys::SchedYield();
  }
  return true;
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_CLOCK_H_
