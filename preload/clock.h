// A clock's time in nanoseconds, for every part of the shim (the recorder's
// event times, the sender's rounds), and the bounded waits of fork's
// prepare handler and the unwinder.
#ifndef HEAPWATCH_PRELOAD_CLOCK_H_
#define HEAPWATCH_PRELOAD_CLOCK_H_

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <time.h>

#include <atomic>

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

// What is left of the wait that *deadline bounds (0: not started; it then
// ends kForkWaitNs from now), in ns; 0 once it is over.
inline uint64_t WaitLeftNs(uint64_t* deadline) {
  const uint64_t now = ClockNs(CLOCK_MONOTONIC);
  if (*deadline == 0) *deadline = now + kForkWaitNs;
  return now < *deadline ? *deadline - now : 0;
}

// Yields until done() holds, or until the wait that *deadline bounds is over
// (WaitLeftNs): false then.
template <typename Done>
bool YieldUntil(Done done, uint64_t* deadline) {
  while (!done()) {
    if (WaitLeftNs(deadline) == 0) return false;
    sys::SchedYield();
  }
  return true;
}

// As YieldUntil, for a wait on what one word says, whose every writer wakes
// the word's waiters after it changes it (WakeWaiters): the thread sleeps in
// the kernel (a futex wait on the value it read) instead of yielding in a
// loop, which burns a core for as long as the wait lasts where no other
// thread wants it (the wait for libunwind's dlopen at the start of a
// process's sampling: 500-650 sched_yield calls, ~2.3 ms of CPU where
// libunwind was not in the page cache; BENCHMARKS.md, "Twentieth
// session"). Each sleep lasts `check_ns` at most, so that done() also sees
// what the word does not carry. Where futex fails (a seccomp filter) the
// wait yields in a loop, as YieldUntil.
template <typename Done>
bool SleepUntil(std::atomic<uint32_t>& word, Done done, uint64_t* deadline, uint64_t check_ns) {
  for (;;) {
    const uint32_t value = word.load(std::memory_order_acquire);
    if (done(value)) return true;
    const uint64_t left = WaitLeftNs(deadline);
    if (left == 0) return false;
    const uint64_t wait = left < check_ns ? left : check_ns;
    const timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
    const long r = sys::Futex(&word, FUTEX_WAIT_PRIVATE, value, &ts);
    if (r < 0 && r != -EAGAIN && r != -ETIMEDOUT && r != -EINTR) sys::SchedYield();
  }
}

// Wakes the threads in SleepUntil on `word` (one system call).
inline void WakeWaiters(std::atomic<uint32_t>& word) {
  sys::Futex(&word, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_CLOCK_H_
