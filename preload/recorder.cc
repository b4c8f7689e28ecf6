#include "recorder.h"

#include <alloca.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <heapwatch/wire.h>

#include "descriptors.h"
#include "dl_functions.h"
#include "modules.h"
#include "raw_memory.h"
#include "raw_syscall.h"
#include "real_allocator.h"
#include "recorder_tables.h"
#include "sender.h"
#include "side_stack.h"
#include "unloaded_code.h"
#include "unwinder.h"

// What glibc's pthread_atfork (a stub in libc_nonshared.a) calls: only glibc
// has it. Referenced weakly, so that under another C library the shim still
// loads and stays off (StartRecorder): musl's ld.so stops the program, exit
// 127, at a symbol it cannot bind ("Error relocating libheapwatch.so:
// __register_atfork: symbol not found"), and Alpine images are common.
extern "C" int __register_atfork(void (*prepare)(), void (*parent)(), void (*child)(),
                                 void* dso_handle) __attribute__((weak));
extern "C" void* __dso_handle;
// glibc's first cleanup buffers (GLIBC_2.2.5; today's headers declare only
// the struct): longjmp and siglongjmp call the routine of each buffer in a
// frame they jump over, and pthread_exit and cancellation do the same as
// they unwind (SampleScope). Weak, as above.
extern "C" void _pthread_cleanup_push(_pthread_cleanup_buffer* buffer, void (*routine)(void*),
                                      void* arg) __attribute__((weak));
extern "C" void _pthread_cleanup_pop(_pthread_cleanup_buffer* buffer, int execute)
    __attribute__((weak));

namespace heapwatch::preload {

__thread ThreadState t_thread __attribute__((tls_model("initial-exec")));
constinit Shim g_shim;
constinit EventClock g_event_clock;

namespace {

struct GuardScope {
  GuardScope() { ++t_thread.guard; }
  ~GuardScope() { --t_thread.guard; }
};

// Takes down what a sample that never returns leaves up: its guard, its
// cancellation state, the unwinder's marks (a signal handler jumped out of
// it, or ended its thread: RecoverAbandonedSample, SampleScope).
void AbandonSample(void*) {
  ThreadState& t = t_thread;
  t.guard = 0;
  t.sample_frame = 0;
  pthread_setcancelstate(t.sample_cancel_state, nullptr);
  UnwinderAbandoned();
}

// RecordAlloc's guard, with where its frame is; and no cancellation
// meanwhile (as NoCancellation, but with the state to restore kept where
// AbandonSample finds it). libunwind's check of an address reads a pipe with
// read(): a thread with a cancellation pending was cancelled inside its
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
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &t_thread.sample_cancel_state);
    ++t_thread.guard;
    t_thread.sample_frame = reinterpret_cast<uintptr_t>(frame);
    if (_pthread_cleanup_push && OnOwnStack(t_thread.sample_frame)) {
      _pthread_cleanup_push(&cleanup, AbandonSample, nullptr);
      pushed = true;
    }
  }
  ~SampleScope() {
    if (pushed) _pthread_cleanup_pop(&cleanup, 0);
    t_thread.sample_frame = 0;
    --t_thread.guard;
    pthread_setcancelstate(t_thread.sample_cancel_state, nullptr);
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
  if (sigaltstack(nullptr, &altstack) != 0 || (altstack.ss_flags & SS_ONSTACK)) return false;
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

// Copies of the process made without fork()'s handlers: _Fork(), or clone()
// without CLONE_VM (a sandbox's or a container runtime's child). ForkChild
// never ran there: the sender, its connection and the events in flight are
// the parent's, and the child has no sender. Its samples filled a ring that
// nobody drained, and its exit() waited a second for a flush that never
// came (FlushSenderAtExit). The token is a word in a page advised
// MADV_WIPEONFORK, which the kernel gives every such copy as zeros (and a
// vfork child, which shares the page, as it is): RecordAlloc reads it at
// each sample, one load of a line nothing writes. A child of fork() has it
// wiped too; its first sample sets it again (AdoptCopy finds that
// ForkChild ran). Where the kernel lacks the advice (before Linux 4.14) the
// token is a static word that always reads set: no copy is ever adopted.
constexpr uint64_t kCopyToken = 0x68656170'77617463;  // "heapwatc"
constinit std::atomic<uint64_t> g_static_token{kCopyToken};
std::atomic<uint64_t>* g_copy_token = &g_static_token;

void ArmCopyToken() {
  void* page = MapZeroed(4096);
  if (!page) return;
  if (madvise(page, 4096, MADV_WIPEONFORK) != 0) return Unmap(page, 4096);
  auto* token = static_cast<std::atomic<uint64_t>*>(page);
  token->store(kCopyToken, std::memory_order_relaxed);
  g_copy_token = token;
}

// The threads of this process: /proc/self/task's entries, read with
// getdents64 into a buffer on the stack (inside malloc: no opendir). -1 if
// they cannot be read.
int CountThreads() {
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  alignas(8) char buf[2048];
  int threads = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
    if (n < 0) threads = -1;
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name
      unsigned short reclen;
      memcpy(&reclen, buf + off + 16, sizeof(reclen));
      if (buf[off + 19] != '.') ++threads;
      off += reclen;
    }
  }
  close(fd);
  return threads;
}

void ForkChild();

// A copy made without fork()'s handlers (above) decides what it is at its
// first sample, or at its first fork if that comes first (whose prepare
// handler would otherwise wait for a loader flag and marks that threads not
// in the copy left up). One thread decides: the one that sets the token
// again. With the copying thread alone in the child, the child is adopted
// as fork's would be (ForkChild: a process of its own to the collector, with
// its own sender and handshake; the events it pushed so far go with the
// ring, its live samples stay in the table, which the new connection
// re-sends). Not when it has started threads (ForkChild's resets need it
// alone) or the copy caught the sender inside dl_iterate_phdr (the loader's
// lock then stays held for good, and the child's unwinds would wait on it):
// the child then passes calls through, forgets the parent's sender, and
// says why. True if it samples on.
__attribute__((noinline, cold)) bool AdoptCopy() {
  auto on = [] { return g_shim.state.load(std::memory_order_acquire) == static_cast<int>(ShimState::kOn); };
  uint64_t wiped = 0;
  if (!g_copy_token->compare_exchange_strong(wiped, kCopyToken, std::memory_order_acq_rel)) return on();
  // A child of fork(), whose handler (ForkChild) made it a process of its
  // own already, and left the token for this: its write was a page fault of
  // every fork, also of the children that exec at once.
  if (InShimsProcess()) return on();
  int threads = CountThreads();
  const char* why = threads < 0  ? "cannot read /proc/self/task"
                    : threads > 1 ? "it has started threads"
                    : SenderHoldsLoader() ? "the copy was made while the sender read the loader's list"
                                          : nullptr;
  if (why) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
    SenderForkChild();  // forgets the parent's sender, its loader flag, its connection
    Say("a process copied without fork()'s handlers (_Fork, clone) is not profiled: ", why);
    return false;
  }
  UnwinderCopyMade();
  ForkChild();
  return on();
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
  // Before the flag: a thread that finds the flag set skips this and goes
  // on to its capture, which must wait for the load too (the sender loads
  // libunwind first thing).
  ExpectUnwinder();
  bool expected = false;
  if (!g_shim.sender_started.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
    return;
  }
  if (!AddressSpaceAllows(g_shim.config)) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
    return;
  }
  uint32_t started = RunOnSharedStack(StartSenderOnStack, nullptr, 0);
  if (started == 0) {
    g_shim.sender_started.store(false, std::memory_order_release);
  } else if (started == 2) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
  }
}

bool IsUnadoptedCopy() {
  return __builtin_expect(g_copy_token->load(std::memory_order_relaxed) != kCopyToken, 0);
}

void ForkPrepare() {
  if (IsUnadoptedCopy()) AdoptCopy();
  // A child forked while another thread maps the tables would find them
  // half made, and nobody to finish (ForkChild).
  WaitForTables(g_shim.tables.load(std::memory_order_acquire));
  UnwinderForkPrepare();
  SenderForkPrepare();
}
// Whether a child has said it does not use libunwind (ForkChild); the next
// children, born with it set, say nothing.
bool g_children_told = false;

void ForkParent() {
  SenderForkParent();
  if (UnwinderForkParent()) g_children_told = true;
}

// The process's pid and start time, for its handshake. Not with glibc's
// getpid() and clock_gettime(): pages (theirs, the vDSO's) that a process
// under the shim, or a forked child, would fault in for these calls alone
// (raw_syscall.h).
void NoteProcessStart() {
  g_shim.pid = static_cast<uint32_t>(InlineSyscall(SYS_getpid));
  timespec now{};
  InlineSyscall(SYS_clock_gettime, CLOCK_REALTIME, reinterpret_cast<long>(&now));
  g_shim.start_time_ns =
      static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

void ForkChild() {
  // The child is a new process to the collector. Its heap is a copy of the
  // parent's, so the live table stays; everything about the connection and
  // the events in flight is the parent's and goes. Nothing here is sampled
  // (SayOnce's setenv allocates): a sample would start a sender before
  // SenderForkChild forgot the parent's.
  GuardScope guard;
  t_thread.tid = 0;
  NoteProcessStart();
  // Copied while another thread mapped the tables (a second's wait in
  // ForkPrepare was not enough, or no fork handler ran): what it mapped so
  // far is unknown here, and the thread is gone. The child passes calls
  // through.
  if (g_shim.tables.load(std::memory_order_relaxed) == kTablesMapping) {
    g_shim.tables.store(kTablesFailed, std::memory_order_relaxed);
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_relaxed);
  }
  // The token stays as the kernel wiped it: the child's first sample (or
  // fork) sets it again (AdoptCopy), not this handler.
  // Events read the clock itself until this process's sender (started at its
  // first sample) notes it: the parent's note is of another process's time.
  g_event_clock.ns.store(0, std::memory_order_relaxed);
  g_shim.ring.DiscardUnsafe();
  if (UnwinderForkChild() && !g_children_told) {
    SayOnce("fork-unwinding", "forked while another thread's unwind was still marked under way",
            " after 1 s (a signal handler jumped out of it?); this child does not use libunwind");
  }
  UnloadedCodeForkChild();
  Counters& c = g_shim.counters;
  for (auto* a : {&c.sampled_allocs, &c.sampled_frees, &c.dropped_events, &c.table_full,
                  &c.unwind_failures, &c.reconnects, &c.bytes_sent}) {
    a->store(0, std::memory_order_relaxed);
  }
  g_shim.resync_needed.store(true, std::memory_order_relaxed);
  SenderForkChild();
  g_shim.sender_started.store(false, std::memory_order_relaxed);  // at the first sample
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
  NoCancellation no_cancellation;
  ssize_t ignored = write(STDERR_FILENO, kPrefix, sizeof(kPrefix) - 1);
  ignored = write(STDERR_FILENO, what, strlen(what));
  ignored = write(STDERR_FILENO, detail, strlen(detail));
  ignored = write(STDERR_FILENO, "\n", 1);
  (void)ignored;
}

namespace {
// Whether this process (or the one that exec'd it) said `key` already.
bool Said(const char* key) {
  const char* said = getenv("HEAPWATCH_SAID");
  return said && strcmp(said, key) == 0;
}
}  // namespace

void SayOnce(const char* key, const char* what, const char* detail) {
  if (Said(key)) return;
  Say(what, detail);
  setenv("HEAPWATCH_SAID", key, 1);
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
  if (CountThreads() == 1) setenv("HEAPWATCH_DISABLE", "1", 1);
  char detail[256];
  snprintf(detail, sizeof detail,
           "%s, whose filter may refuse the shim's system calls or end the program for them; "
           "what it recorded until now was delivered",
           call);
  Say("profiling stops: the program sandboxes itself with ", detail);
}

namespace {
// Whether the C library is glibc major.minor or later. Weak: musl has none.
extern "C" const char* gnu_get_libc_version() __attribute__((weak));
bool GlibcAtLeast(unsigned major, unsigned minor) {
  if (!gnu_get_libc_version) return false;
  unsigned v[2] = {0, 0};
  const char* p = gnu_get_libc_version();
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
    char detail[200];
    snprintf(detail, sizeof detail,
             "%s is in libpthread.so.0 with glibc %s, and the program does not load it "
             "(to profile it, preload libpthread.so.0 before the shim)",
             missing, gnu_get_libc_version ? gnu_get_libc_version() : "?");
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
  __register_atfork(ForkPrepare, ForkParent, ForkChild, &__dso_handle);
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
