// What unwinder.cc (the captures, the forks' waits) and unwinder_load.cc
// (libunwind loaded at the first sample) share. Included by those two alone.
#ifndef HEAPWATCH_PRELOAD_UNWINDER_INTERNAL_H_
#define HEAPWATCH_PRELOAD_UNWINDER_INTERNAL_H_

#include <sched.h>
#include <stdint.h>
#include <time.h>

#include <atomic>

#include "clock.h"
#include "fork_words.h"
#include "libunwind_loader.h"
#include "raw_syscall.h"

namespace heapwatch::preload {

// libunwind's entry points, written by the load before g_libunwind reads
// kLoaded. A store to g_libunwind that a thread may be waiting for (the
// captures', forks' and other loaders' waits: SleepUntil) is followed by
// WakeWaiters (clock.h).
extern Libunwind g_lu;
enum : uint32_t { kUnloaded, kLoading, kLoaded, kNoLibunwind };
extern std::atomic<uint32_t> g_libunwind;
// g_fork_words->forking (fork_words.h): set from fork's prepare handler to
// its parent or child handler (each unwind's mark and the load read it: a
// Dekker pair with the handler).

// Fork's prepare handler waits for other threads' unwinds to end
// (YieldUntil, kForkWaitNs: clock.h), and for a load of libunwind under way
// (LoadUnderWay, asleep). An unwind takes microseconds; one still under way
// after a second has a thread that is stopped (a debugger), or that left it
// for good where no cleanup ran (a signal handler's __builtin_longjmp:
// recorder.cc, RecoverAbandonedSample), and the thread has not sampled
// since. Past it the fork goes on; the mark it gave up on is
// kept and not waited for again, and a child born while any mark is up does
// not use libunwind (that thread may hold libunwind's or the loader's lock).

// unwinder.cc: marks this thread as running libunwind's code (also its
// loading, whose dlopen may run libunwind's constructors).
void SetInsideLibunwind(bool inside);

// unwinder_load.cc:
// Whether libunwind is loaded, once a load under way has been waited for.
bool LibunwindReady();
// Whether libunwind's load is under way in another thread once waited for
// as the fork's marks are (`deadline`); this thread's own (a fork from a
// signal handler that interrupted it) is not waited for.
bool LoadUnderWay(uint64_t deadline);
// The forked child's part: whether it goes without libunwind
// (`child_without_libunwind`: a thread not in the child had a mark up, and
// libunwind is there to go without); a load the parent had not made is
// the child's own sender's to make.
bool LoadForkChild(bool child_without_libunwind);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_UNWINDER_INTERNAL_H_
