#include "recorder.h"

#include <alloca.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <heapwatch/wire.h>

#include "descriptors.h"
#include "dl_functions.h"
#include "libc_functions.h"
#include "loader_lock.h"
#include "modules.h"
#include "raw_syscall.h"
#include "real_allocator.h"
#include "recorder_fork.h"
#include "recorder_tables.h"
#include "sender.h"
#include "side_stack.h"
#include "text.h"
#include "unwinder.h"

// What glibc's pthread_atfork (a stub in libc_nonshared.a) calls: only glibc
// has it. Referenced weakly, so that under another C library the shim still
// loads and stays off (StartRecorder): musl's ld.so stops the program, exit
// 127, at a symbol it cannot bind ("Error relocating libheapwatch.so:
// __register_atfork: symbol not found"), and Alpine images are common.
extern "C" int __register_atfork(void (*prepare)(), void (*parent)(), void (*child)(),
                                 void* dso_handle) __attribute__((weak));

namespace heapwatch::preload {

__thread ThreadState t_thread __attribute__((tls_model("initial-exec")));
constinit Shim g_shim;
constinit EventClock g_event_clock;

namespace {

// Takes down what a sample that never returns leaves up: its guard, its
// cancellation state, the unwinder's marks (a signal handler jumped out of
// it, or ended its thread: RecoverAbandonedSample, SampleScope).
void AbandonSample(void*) {
  ThreadState& t = t_thread;
  t.guard = 0;
  t.sample_frame = 0;
  Libc().pthread_setcancelstate(t.sample_cancel_state, nullptr);
  UnwinderAbandoned();
}

// RecordAlloc's guard, with where its frame is; and no cancellation
// meanwhile (pthread_setcancelstate: disabling is a compare-and-swap on the
// thread's own descriptor, and enabling again acts on nothing; the state to
// restore is kept where AbandonSample finds it). libunwind's check of an
// address reads a pipe with read(): a thread with a cancellation pending was cancelled inside its
// first samples, in the middle of a malloc that the application (holding a
// lock, say) had every right to think could not end its thread
// (tests/programs/shim/shim_cancel.cc). And a cleanup buffer: a longjmp out
// of the sample (from a signal handler that interrupted it) or the thread's
// end inside it has glibc call AbandonSample on the way. Only on the
// thread's own stack (known from its first capture on): the buffer list is
// the thread's, not the stack's, and a coroutine that a signal handler
// switched away from mid-sample would leave its buffer there while another
// coroutine's longjmp could run or drop it. glibc compares addresses
// relative to the top of the thread's stack, which keeps a jump on another
// stack away from a buffer on the thread's own. Where no cleanup runs,
// RecoverAbandonedSample covers some cases.
struct SampleScope {
  explicit SampleScope(void* frame) {
    const LibcFunctions& libc = Libc();
    libc.pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &t_thread.sample_cancel_state);
    ++t_thread.guard;
    t_thread.sample_frame = reinterpret_cast<uintptr_t>(frame);
    // Null before glibc 2.34 in a program without libpthread.so.0.
    if (libc._pthread_cleanup_push && OnOwnStack(t_thread.sample_frame)) {
      libc._pthread_cleanup_push(&cleanup, AbandonSample, nullptr);
      pushed = true;
    }
  }
  ~SampleScope() {
    if (pushed) g_libc._pthread_cleanup_pop(&cleanup, 0);
    t_thread.sample_frame = 0;
    --t_thread.guard;
    g_libc.pthread_setcancelstate(t_thread.sample_cancel_state, nullptr);
  }
  _pthread_cleanup_buffer cleanup;
  bool pushed = false;
};

// A sample that a signal handler took away for good where glibc ran no
// cleanup (SampleScope): a jump out of it with GCC's __builtin_longjmp or
// setcontext, or out of the few instructions around the cleanup buffer. Its
// guard, the unwinder's marks and the disabled cancellation stayed: the
// thread would sample no more, nor could it be cancelled, and every fork
// would wait for its unwind (a second, since the bound in
// UnwinderForkPrepare). `frame` is SampleSlowPath's, which RecordAlloc's
// callers call from the same function: anything that runs under
// RecordAlloc (libunwind's allocations, a signal handler's) runs below
// RecordAlloc's frame, so a call at or above it on the same stack means
// that frame is gone. Only on the thread's own stack, and not on an
// alternate signal stack (an application may keep one inside its stack):
// elsewhere the guard stays up. A thread that allocates only from deeper
// frames after the jump is not recovered either.
__attribute__((noinline, cold)) bool RecoverAbandonedSample(void* frame) {
  ThreadState& t = t_thread;
  auto here = reinterpret_cast<uintptr_t>(frame);
  if (t.sample_frame == 0 || here < t.sample_frame) return false;
  if (!OnOwnStack(here) || !OnOwnStack(t.sample_frame)) return false;
  stack_t altstack;
  if (sys::Sigaltstack(nullptr, &altstack) != 0 || (altstack.ss_flags & SS_ONSTACK)) return false;
  AbandonSample(nullptr);
  return true;
}

// A successful malloc or free leaves errno as it was, as glibc's do. Recording
// one may not: libunwind's first check of an address reads an empty pipe
// (EAGAIN), and the very first sampled malloc of a process changed errno
// (tests/programs/shim/shim_errno.cc). An error path that allocates before it
// reads errno reported "Resource temporarily unavailable".
struct KeepErrno {
  int saved = errno;
  ~KeepErrno() { errno = saved; }
};

// Sampled allocations and frees are counted by the sender as it takes their
// events from the ring (sender_connection.cc, PoppedTally), and here when one is dropped.
__attribute__((noinline, cold)) void Dropped(const wire::EventRecord& ev) {
  Counters& c = g_shim.counters;
  c.dropped_events.fetch_add(1, std::memory_order_relaxed);
  (ev.kind == static_cast<uint32_t>(wire::EventKind::kAlloc) ? c.sampled_allocs : c.sampled_frees)
      .fetch_add(1, std::memory_order_relaxed);
  g_shim.resync_needed.store(true, std::memory_order_release);
}

// Every half ring of events, the push wakes the sender if it sleeps: its
// sleep is sized for the rate it last saw, and a burst (more threads, a
// smaller R) would otherwise fill the ring first and lose events. Once in
// 4096 events by default, and a system call only when the sender sleeps.
void PushOrDrop(const wire::EventRecord& ev) {
  bool half_lap = false;
  if (__builtin_expect(!g_shim.ring.Push(ev, &half_lap), 0)) return Dropped(ev);
  if (__builtin_expect(half_lap, 0)) NudgeSender();
}

// The sender starts at a process's first sample, not at its start (nor at a
// fork): most processes that a shell or a probe runs, and most forked
// children, which exec at once, never sample, and for each the thread, its
// first round and the exit's wait for it were ~1.4 ms of the ~2.6 ms the
// shim added to a fork and exec of /bin/true (BENCHMARKS.md). Such a process
// says nothing to the collector: it has no sample to show. One thread
// starts it, on the shared stack (side_stack.h): a first sample may come on
// a coroutine's small stack or an alternate signal stack, where
// pthread_create's few KiB overflowed it (SmallStackTest: SIGSEGV). While
// another thread has that stack, the next sample tries again. A failure to
// create the thread turns the process off. Not in a vfork child (or
// another that shares the memory, made with CLONE_VM): a thread made there
// is the child's, gone at its exec or exit, while the memory it was noted
// in is the parent's, whose exit then waited a second for it; and glibc's
// list of threads, also the parent's, would hold it. The parent's own
// first sample starts it.
uint32_t StartSenderOnStack(void**, uint32_t) { return StartSender() ? 1 : 2; }

__attribute__((noinline, cold)) void StartSenderAtFirstSample() {
  if (!InShimsProcess()) return;
  bool expected = false;
  if (!g_shim.sender_started.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
    return;
  }
  if (!AddressSpaceAllows(g_shim.config)) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
    return;
  }
  // A child forked while another thread of its parent's held one of the
  // loader's locks: its unwinds would wait for it for good.
  if (LoaderLockHeldByGhost()) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
    SayOnce("fork-loader", "forked while another thread held the loader's lock (its dlopen or dlclose)",
            "; glibc leaves it held in the child, where unwinding would wait for it for good: "
            "this child is not profiled");
    return;
  }
  uint32_t started = RunOnSharedStack(StartSenderOnStack, nullptr, 0);
  if (started == 0) {
    g_shim.sender_started.store(false, std::memory_order_release);
  } else if (started == 2) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
  }
}

// libunwind's loader thread, in a process with threads (LoadUnwinderAtSample).
// Its mallocs come from the shim's arena (recorder.h, SenderHeapAlloc): a
// sampler that counts no bytes sends every allocation to the slow path,
// which the guard keeps unsampled. Tries again every 10 ms while another
// thread's load (or a fork) held it up.
void* LoadUnwinderThread(void*) {
  t_thread.guard = 1;
  t_thread.sender_heap = true;
  t_thread.sampler.bytes_left = 0;
  bool go_on = LoadUnwinderNow(false);
  while (go_on && !UnwinderLoadSettled()) {
    timespec ts{0, 10000000};
    sys::Nanosleep(&ts);
    go_on = LoadUnwinderNow(false);
  }
  return nullptr;
}

uint32_t LoadUnwinderOnStack(void**, uint32_t) { return LoadUnwinderNow(false) ? 1 : 2; }

uint32_t StartUnwinderLoaderOnStack(void**, uint32_t) {
  const LibcFunctions& libc = Libc();
  sigset_t all, old;
  FillSignalSet(&all);
  libc.pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  libc.pthread_attr_init(&attr);
  libc.pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // Address space the application's limits count: dlopen's deepest call is
  // a few KiB.
  libc.pthread_attr_setstacksize(&attr, 128 << 10);
  pthread_t thread;
  ++t_thread.guard;  // pthread_create allocates
  const int rc = libc.pthread_create(&thread, &attr, LoadUnwinderThread, nullptr);
  --t_thread.guard;
  libc.pthread_attr_destroy(&attr);
  libc.pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return rc == 0 ? 1 : 2;
}

// libunwind is loaded at a sample, until it is (or cannot be): not at start,
// which cost every exec ~120,000 instructions (unwinder_load.cc), and not by
// the sender, which must not call into the loader (sender.cc). On the
// shared stack (side_stack.h), as the sender's start. Where glibc
// knows one thread, by the sampling thread itself: no other thread can hold
// the loader's locks, and none can wait for a lock this thread holds. Not
// inside the loader (a first sample inside dlopen, or in a constructor it
// runs): that sample has no stack, and a later one loads it. Where there
// are other threads, one of them may hold the loader's lock and wait for a
// lock this thread holds (a constructor that registers itself under a lock
// held around this malloc): the load goes to a thread of its own, which
// this capture and others wait for (unwinder.h, LibunwindReady). Starting
// that thread costs such a process nothing more: glibc counts threads
// already.
__attribute__((noinline, cold)) void LoadUnwinderAtSample() {
  if (!InShimsProcess()) return;  // a vfork child's load would be its parent's
  if (GlibcSingleThreaded()) {
    if (!LoaderLockHeld()) RunOnSharedStack(LoadUnwinderOnStack, nullptr, 0);
    return;
  }
  // Before the flag: a thread that finds the flag set goes on to its
  // capture, which must wait for the load too.
  ExpectUnwinder();
  bool expected = false;
  if (!g_shim.unwinder_loader_started.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return;
  const uint32_t started = RunOnSharedStack(StartUnwinderLoaderOnStack, nullptr, 0);
  if (started == 0) {
    g_shim.unwinder_loader_started.store(false, std::memory_order_release);
  } else if (started == 2) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
  }
}

}  // namespace

uint32_t CurrentTid() {
  ThreadState& t = t_thread;
  if (t.tid == 0) t.tid = static_cast<uint32_t>(syscall(SYS_gettid));
  return t.tid;
}

void Say(const char* what, const char* detail) {
  static const char kPrefix[] = "heapwatch: ";
  if (!StandardErrorAsNoted()) return;  // not the stderr the process started with
  sys::Write(STDERR_FILENO, kPrefix, sizeof(kPrefix) - 1);
  sys::Write(STDERR_FILENO, what, Length(what));
  sys::Write(STDERR_FILENO, detail, Length(detail));
  sys::Write(STDERR_FILENO, "\n", 1);
}

namespace {
// Whether this process (or the one that exec'd it) said `key` already.
bool Said(const char* key) {
  const char* said = getenv("HEAPWATCH_SAID");
  return said && Equal(said, key);
}
}  // namespace

void SayOnce(const char* key, const char* what, const char* detail) {
  if (Said(key)) return;
  Say(what, detail);
  Libc().setenv("HEAPWATCH_SAID", key, 1);
}

namespace {
// Set by StopForSeccomp; a filter installed before the shim's own start (from
// another library's constructor) keeps it off from the start.
std::atomic<bool> g_sandboxed{false};
}  // namespace

void StopForSeccomp(const char* call) {
  if (g_sandboxed.exchange(true, std::memory_order_acq_rel)) return;
  const int was = g_shim.state.exchange(static_cast<int>(ShimState::kOff), std::memory_order_acq_rel);
  if (was != static_cast<int>(ShimState::kOn)) return;
  // Threads find the shim off at their next sampling decision; a sample
  // already past it ends in microseconds and makes no system call a filter
  // would refuse (its unwind's are libunwind's, which glibc makes too).
  StopSender(1000);  // the exit's bound (interposer.cc)
  // A program it execs inherits the filter: in the environment, the shim
  // there passes calls through. Only while this is the process's one thread
  // (setenv is not safe against another thread's getenv); a sandbox
  // typically installs its filter before it starts threads, or in the child
  // it is about to exec.
  if (CountThreads() == 1) Libc().setenv("HEAPWATCH_DISABLE", "1", 1);
  char detail[256];
  Libc().snprintf(detail, sizeof detail,
                  "%s, whose filter may refuse the shim's system calls or end the program for them; "
                  "what it recorded until now was delivered",
                  call);
  Say("profiling stops: the program sandboxes itself with ", detail);
}

namespace {
// Whether the C library is glibc major.minor or later (musl has no
// gnu_get_libc_version).
bool GlibcAtLeast(unsigned major, unsigned minor) {
  const auto version = Libc().gnu_get_libc_version;
  if (!version) return false;
  unsigned v[2] = {0, 0};
  const char* p = version();
  for (unsigned i = 0; i < 2 && *p; ++i, p += *p == '.') {
    for (; *p >= '0' && *p <= '9'; ++p) v[i] = v[i] * 10 + static_cast<unsigned>(*p - '0');
  }
  return v[0] > major || (v[0] == major && v[1] >= minor);
}
}  // namespace

bool LoadUnwinderNow(bool at_start) {
  const char* error = nullptr;
  {
    GuardScope guard;  // dlopen allocates
    LoadUnwinder(&error);
  }
  if (!error) return true;
  // An application image whose glibc is older than the shim's libunwind
  // needs (2.34), or one without the shim's directory intact. With
  // HEAPWATCH_UNWIND=fp the shim goes on with frame pointers alone.
  const bool frame_pointers = g_shim.config.frame_pointers;
  if (!frame_pointers) g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
  const char* what = frame_pointers ? "cannot load libunwind.so.8; frame pointers only: "
                                    : "cannot load libunwind.so.8; profiling disabled: ";
  if (at_start) {
    SayOnce("libunwind", what, error);
  } else {
    // SayOnce's setenv is not safe against another thread's getenv, and
    // the process has its sender besides.
    if (!Said("libunwind")) Say(what, error);
  }
  return frame_pointers;
}

void LoadUnwinderBeforeLeavingFiles() {
  if (g_shim.state.load(std::memory_order_acquire) != static_cast<int>(ShimState::kOn) || !InShimsProcess()) {
    return;
  }
  KeepErrno keep_errno;
  LoadUnwinderNow(false);
  KeepMappingsReadable();  // for the sender's module maps (modules.h)
}

void StartRecorder(bool other_allocator_first) {
  NoteStandardError();
  Config& c = g_shim.config;
  ParseConfig([](const char* name) -> const char* { return getenv(name); }, &c);
  auto off = [] { g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release); };
  // The table's filter is also free()'s only check for the bootstrap arena's
  // blocks, so where the arena has any (glibc before 2.34, whose dlsym
  // allocates) the table is set up now, in every state, pass-through
  // included; until then every free() takes the slow path, which checks the
  // arena itself. Without such blocks free() has nothing to check before the
  // first sample, and the tables wait for it (MapTables): most processes
  // never sample.
  if (!WaitForRealAllocator()) return off();
  uint64_t arena_blocks[kMaxArenaBlocks];
  size_t arena_count = ArenaBlocks(arena_blocks);
  bool have_table = true;
  if (arena_count > 0) {
    have_table = g_shim.table.Init(c.table_slots, arena_blocks, arena_count);
  } else {
    g_shim.table.ReadNothingUntilInit();
  }
  if (c.disabled || other_allocator_first || !have_table || g_sandboxed.load(std::memory_order_acquire)) {
    return off();
  }
  if (!__register_atfork) {
    // Not glibc (musl): the shim is built on glibc's fork, TLS and loader,
    // so it only passes calls through.
    SayOnce("musl", "the C library is not glibc (musl?); profiling disabled");
    return off();
  }
  if (const char* missing = MissingThreadFunction()) {
    // glibc before 2.34 keeps the sender's thread calls in libpthread.so.0,
    // which the shim does not load (dl_functions.h), nor this program. It
    // can be preloaded before the shim, as glibc loads it at start.
    const LibcFunctions& libc = Libc();
    char detail[200];
    libc.snprintf(detail, sizeof detail,
                  "%s is in libpthread.so.0 with glibc %s, and the program does not load it "
                  "(to profile it, preload libpthread.so.0 before the shim)",
                  missing, libc.gnu_get_libc_version ? libc.gnu_get_libc_version() : "?");
    SayOnce("libpthread", "profiling disabled: ", detail);
    return off();
  }

  if (!AddressSpaceAllows(c)) return off();
  uintptr_t lo, hi;
  SelfCodeRange(&lo, &hi);
  InitUnwinder(c.frame_pointers, lo, hi, c.unwind_caches);
  // libunwind is loaded by the sender, at the first sample. But where the
  // copy beside the shim cannot load (it needs glibc 2.34), here: the
  // image's own libunwind, if any, is looked for now, and if there is none,
  // the process says so once for itself and the programs it execs
  // (SayOnce), as it can only at start.
  if (!GlibcAtLeast(2, 34) && !LoadUnwinderNow(true)) return off();
  NoteProcessStart();
  ArmCopyToken();
  // The handlers' owner, which glibc names only to unregister them when the
  // object is unloaded: the shim never is (-z nodelete), and is linked
  // without the start files that define __dso_handle (CMakeLists.txt).
  static char atfork_owner;
  __register_atfork(ForkPrepare, ForkParent, ForkChild, &atfork_owner);
  g_shim.state.store(static_cast<int>(ShimState::kOn), std::memory_order_release);
}

__attribute__((noinline)) bool SampleSlowPath(size_t size) {
  ThreadState& t = t_thread;
  if (t.guard && !RecoverAbandonedSample(__builtin_frame_address(0))) {
    RepairWrappedCount(&t.sampler);
    return false;
  }
  int state = g_shim.state.load(std::memory_order_relaxed);
  if (state != static_cast<int>(ShimState::kOn)) {
    if (state == static_cast<int>(ShimState::kOff)) {
      DisableSampler(&t.sampler);
    } else {
      RepairWrappedCount(&t.sampler);
    }
    return false;
  }
  return SampleSlow(&t.sampler, size, g_shim.config.sample_bytes);
}

__attribute__((noinline)) void RecordAlloc(void* p, size_t size) {
  if (!p || t_thread.guard) return;
  KeepErrno keep_errno;
  SampleScope guard(__builtin_frame_address(0));
  // Before the unwind: a copy's may wait on a lock of a thread not there.
  if (IsUnadoptedCopy() && !AdoptCopy()) return;
  if (__builtin_expect(g_shim.tables.load(std::memory_order_acquire) != kTablesMapped, 0) && !MapTables()) {
    return;
  }
  if (__builtin_expect(!g_shim.sender_started.load(std::memory_order_acquire), 0)) {
    StartSenderAtFirstSample();
    if (g_shim.state.load(std::memory_order_acquire) != static_cast<int>(ShimState::kOn)) return;
  }
  if (__builtin_expect(!UnwinderLoadSettled(), 0)) {
    LoadUnwinderAtSample();
    if (g_shim.state.load(std::memory_order_acquire) != static_cast<int>(ShimState::kOn)) return;
  }
  auto address = reinterpret_cast<uintptr_t>(p);
  // The cache misses of the table slot and the ring slot then overlap the
  // unwind instead of following it.
  g_shim.table.PrefetchForInsert(address);
  g_shim.ring.PrefetchForPush();
  // HEAPWATCH_MAX_FRAMES entries (512 bytes by default, at most
  // wire::kMaxFrames: config.cc), not kMaxFrames: the stack is the host's.
  const uint32_t max_frames = g_shim.config.max_frames;
  auto* pcs = static_cast<uint64_t*>(alloca(max_frames * sizeof(uint64_t)));
  uint32_t depth = CaptureStack(pcs, max_frames);
  if (depth == 0) {
    g_shim.counters.unwind_failures.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t stack_id = StackId(pcs, depth, UnloadEpoch());
  if (!g_shim.depot.Intern(stack_id, pcs, depth)) {
    g_shim.counters.table_full.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t now = EventTimeNs();
  if (!g_shim.table.Insert({address, size, stack_id, now})) {
    g_shim.counters.table_full.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  PushOrDrop({static_cast<uint32_t>(wire::EventKind::kAlloc), CurrentTid(), address, size,
              stack_id, now});
}

bool RecordFree(void* p, LiveTable::Entry* removed) {
  KeepErrno keep_errno;
  LiveTable::Entry e;
  auto address = reinterpret_cast<uintptr_t>(p);
  g_shim.ring.PrefetchForPush();  // its miss overlaps Remove's
  if (!g_shim.table.Remove(address, &e)) return false;
  PushOrDrop({static_cast<uint32_t>(wire::EventKind::kFree), CurrentTid(), address, 0, 0,
              EventTimeNs()});
  if (removed) *removed = e;
  return true;
}

void* SenderHeapAlloc(size_t size) {
  if (!t_thread.sender_heap) return nullptr;
  void* p = ArenaAlloc(size, 16);  // zeroed: never used before
  if (!p) return nullptr;
  // A block that cannot be pinned stays in the arena unused.
  return g_shim.table.Pin(reinterpret_cast<uintptr_t>(p)) ? p : nullptr;
}

void RestoreLive(const LiveTable::Entry& e) {
  KeepErrno keep_errno;
  if (!g_shim.table.Insert(e)) {
    g_shim.counters.table_full.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Counted like any allocation's event (and its free's before it): a
  // realloc that failed after RecordFree reads as a free and an allocation.
  PushOrDrop({static_cast<uint32_t>(wire::EventKind::kAlloc), CurrentTid(), e.address, e.size,
              e.stack_id, e.time_ns});
}

}  // namespace heapwatch::preload
