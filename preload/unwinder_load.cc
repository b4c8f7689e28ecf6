// libunwind loaded at a process's first sample (LoadUnwinder, unwinder.h),
// and the captures' and forks' waits for that load.
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "raw_memory.h"
#include "raw_syscall.h"
#include "text.h"
#include "unwinder.h"
#include "unwinder_internal.h"

namespace heapwatch::preload {

// libunwind is loaded at a process's first sample (LoadUnwinder): not at
// start, which cost every exec under the shim ~120,000
// instructions (~190 us a spawn of /bin/true, BENCHMARKS.md) whether it
// sampled or not. g_lu is written before the state becomes kLoaded.
Libunwind g_lu;
std::atomic<uint32_t> g_libunwind{kUnloaded};

namespace {

// Until when a capture waits for the load under way (0: none is expected):
// one deadline for the process, so that a load that cannot go on (the
// sampling thread holds the loader's lock: a first sample inside an
// application's dlopen) stalls its samples this long in all, not each,
// where LoaderSleeps cannot tell (no /proc).
std::atomic<uint64_t> g_load_deadline{0};
constexpr uint64_t kLoadWaitNs = 250000000;
// The thread whose load is under way (its tid), for LoaderSleeps.
std::atomic<uint32_t> g_loader_tid{0};
// Whether this thread is inside LoadUnwinder's dlopen.
__thread bool t_loading __attribute__((tls_model("initial-exec")));

}  // namespace

// Little stack: a capture may run where only a few KiB are left (a
// coroutine's, an alternate signal stack), so no printf here, and only the
// start of the line is read: "tid (name) S ...", the name at most 15 bytes.
bool ThreadSleeps(uint32_t tid) {
  char path[48] = "/proc/self/task/";
  char digits[12];
  int d = 0;
  for (; d == 0 || tid != 0; tid /= 10) digits[d++] = static_cast<char>('0' + tid % 10);
  char* p = path + Length(path);
  while (d > 0) *p++ = digits[--d];
  memcpy(p, "/stat", sizeof "/stat");
  int fd = static_cast<int>(sys::Open(path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return false;
  char buf[64];
  long n = sys::Read(fd, buf, sizeof buf - 1);
  sys::Close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  const char* paren = LastOf(buf, ')');  // the name may hold anything, also ')'
  return paren && paren[1] == ' ' && paren[2] == 'S';
}

namespace {

// Whether the thread that loads libunwind sleeps (ThreadSleeps), which
// inside dlopen means it waits for a lock: the loader's, which another
// thread holds inside a dlopen of its own. That thread may be the one
// waiting for the load (a first sample from a constructor the application's
// dlopen runs, or inside that dlopen's own allocations). Reading from disk
// or faulting pages in is state D.
bool LoaderSleeps() { return ThreadSleeps(g_loader_tid.load(std::memory_order_relaxed)); }

}  // namespace

// Whether libunwind is loaded, once the load under way (LoadUnwinder, in
// its loader thread) has been waited for: while its loader runs, until the
// process's deadline; not while the loader sleeps (LoaderSleeps), which it
// does when this thread holds the loader's lock, and which each capture
// reads again, every half millisecond while it waits: once the
// application's dlopen has returned, the next capture waits for the load.
bool LibunwindReady() {
  uint32_t state = g_libunwind.load(std::memory_order_acquire);
  if (__builtin_expect(state == kLoaded, 1)) return true;
  if (state == kNoLibunwind) return false;
  uint64_t deadline = g_load_deadline.load(std::memory_order_acquire);
  if (deadline == 0) return false;  // no loader thread loads it
  constexpr uint64_t kSleepCheckNs = 500000;
  uint64_t next_check = 0;  // at once
  auto done = [&](uint32_t now_state) {
    if (now_state >= kLoaded) return true;
    if (now_state != kLoading) return false;
    const uint64_t now = ClockNs(CLOCK_MONOTONIC);
    if (now < next_check) return false;
    next_check = now + kSleepCheckNs;
    return LoaderSleeps();
  };
  SleepUntil(g_libunwind, done, &deadline, kSleepCheckNs);
  return g_libunwind.load(std::memory_order_acquire) == kLoaded;
}

bool LoadUnwinder(const char** error) {
  uint64_t deadline = 0;
  // A Dekker pair with UnwinderForkPrepare, as EnterLibunwind: no child is
  // born halfway through the dlopen, whose loader state would be the
  // parent's half-made one (glibc's fork resets the loader's lock in the
  // child, not what it guarded).
  auto claimed = [](uint32_t state) {
    if (state != kUnloaded) return state != kLoading;
    if (!g_libunwind.compare_exchange_strong(state, kLoading, std::memory_order_seq_cst)) return false;
    if (!g_fork_words->forking.load(std::memory_order_seq_cst)) return t_loading = true;
    g_libunwind.store(kUnloaded, std::memory_order_release);
    WakeWaiters(g_libunwind);
    return false;
  };
  // Another thread's load, or a fork's (which g_libunwind does not show:
  // looked at again every millisecond), first.
  constexpr uint64_t kForkCheckNs = 1000000;
  if (!SleepUntil(g_libunwind, claimed, &deadline, kForkCheckNs)) return false;
  if (!t_loading) return g_libunwind.load(std::memory_order_acquire) == kLoaded;
  g_loader_tid.store(static_cast<uint32_t>(syscall(SYS_gettid)), std::memory_order_relaxed);
  SetInsideLibunwind(true);
  const bool loaded = LoadLibunwind(&g_lu, error);
  SetInsideLibunwind(false);
  g_libunwind.store(loaded ? kLoaded : kNoLibunwind, std::memory_order_release);
  WakeWaiters(g_libunwind);
  t_loading = false;
  return loaded;
}

bool UnwinderLoadSettled() { return g_libunwind.load(std::memory_order_acquire) >= kLoaded; }

void ExpectUnwinder() {
  uint64_t none = 0;
  g_load_deadline.compare_exchange_strong(none, ClockNs(CLOCK_MONOTONIC) + kLoadWaitNs,
                                          std::memory_order_release, std::memory_order_relaxed);
}

bool LoadUnderWay(uint64_t deadline) {
  if (t_loading) return true;
  return !SleepUntil(g_libunwind, [](uint32_t state) { return state != kLoading; }, &deadline, kForkWaitNs);
}

HEAPWATCH_FORK_CHILD_CODE bool LoadForkChild(bool child_without_libunwind) {
  const uint32_t loaded = g_libunwind.load(std::memory_order_relaxed);
  const bool without_libunwind = child_without_libunwind && loaded != kNoLibunwind;
  // Not loaded: the child loads it at its first sample.
  if (without_libunwind) {
    g_libunwind.store(kNoLibunwind, std::memory_order_relaxed);
  } else if (loaded != kLoaded) {
    g_load_deadline.store(0, std::memory_order_relaxed);
  }
  t_loading = false;
  return without_libunwind;
}

}  // namespace heapwatch::preload
