// A clock's time in nanoseconds, for every part of the shim (the recorder's
// event times, the sender's rounds, the unwinder's bounded waits).
#ifndef HEAPWATCH_PRELOAD_CLOCK_H_
#define HEAPWATCH_PRELOAD_CLOCK_H_

#include <stdint.h>
#include <time.h>

namespace heapwatch::preload {

// `clock`'s time in nanoseconds (clock_gettime).
inline uint64_t ClockNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_CLOCK_H_
