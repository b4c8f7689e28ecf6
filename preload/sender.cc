// The sender thread's life: its start (at the first sample), rounds, sleep,
// pause, the exit flush and fork. What it writes on a connection, and why a
// resync is correct, is sender_connection.cc's.
#include "sender.h"

#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <new>

#include "clock.h"
#include "libc_functions.h"
#include "modules.h"
#include "raw_memory.h"
#include "raw_syscall.h"
#include "sender_connection.h"
#include "unwinder.h"

namespace heapwatch::preload {
namespace {

// The filters are mapped after the process's first sample, and the ring
// ahead of its use from then on, up to this size each (72 KiB and 512 KiB by
// default); larger ones fault in as they are used. Inherited by a forked
// child (see RunOnce).
constexpr size_t kPrefaultMaxBytes = size_t{1} << 20;
bool g_prefaulted = false;

enum class Thread : int { kNone = 0, kRunning = 1 };
// A reconnect and resync touched 8 KiB of it (smaps: 12 KiB of the task's
// memory resident, its thread control block's page included).
constexpr size_t kSenderStackBytes = 64 << 10;

// How long a claimed ring position may stay unpublished (RunOnce).
constexpr uint64_t kUnpublishedGiveUpNs = 250000000;

SenderState* g_state = nullptr;  // mmap'd once; survives fork (the child reuses it)
// Set in a forked child: g_state is the parent's, reset when the child's own
// sender starts (StartSender), not in the fork handler: that was a write
// to its page, a page fault of every fork, also of children that exec at
// once. Only the sender uses the state, and the child has none until then.
bool g_state_inherited = false;
std::atomic<int> g_thread{0};
// The sender's task (see StartSender): its stack, thread area and guard
// page, mapped at its first start and kept for the next (after a pause), not
// copied by fork (MADV_DONTFORK); and its thread id, which the kernel
// zeroes, and wakes a futex on, when the task ends (CLONE_CHILD_CLEARTID:
// PauseSender waits for that).
uint8_t* g_task_memory = nullptr;
size_t g_task_bytes = 0;
std::atomic<int32_t> g_task_tid{0};
// Set by PauseSender: the sender ends after its round (SenderMain).
std::atomic<bool> g_pause_requested{false};
std::atomic<bool> g_tried_connect{false};
std::atomic<uint64_t> g_flush_requested{0};
std::atomic<uint64_t> g_flush_done{0};
// Futex word the sender sleeps on; bumped to wake it (an exiting process, a
// ring filling up). A futex, not an eventfd: no descriptor the application
// could close or reuse, and nothing to recreate after fork.
std::atomic<uint32_t> g_wake{0};
// True while the sender sleeps in Idle (NudgeSender's check). A nudge that
// reads false just before the sender goes to sleep is lost: that sleep then
// runs its course, as without nudges.
std::atomic<bool> g_sleeping{false};
// A credential call for the sender to make (SenderFollowCredentials): the
// caller writes it and moves `posted`; the sender makes it, stores its
// result and moves `done` to `posted`, a futex word the caller waits on.
struct CredentialCall {
  std::atomic<uint32_t> posted{0};
  std::atomic<uint32_t> done{0};
  long number = 0, a = 0, b = 0, c = 0;
  long result = 0;
};
CredentialCall g_credential_call;

// Ends the sender's sleep in Idle now (or makes its next one return at once).
void WakeSender() {
  g_wake.fetch_add(1, std::memory_order_acq_rel);
  sys::Futex(&g_wake, FUTEX_WAKE_PRIVATE, 1, nullptr);
}

// Sleeps until the idle period ends or something wakes the sender (an
// exiting process, a ring filling up); then notices a collector that hung
// up, and reads and ignores anything it sent.
void Idle(SenderState* s, uint64_t wait_ms) {
  uint32_t seen = g_wake.load(std::memory_order_acquire);
  // A pause or a credential call requested before `seen` was read woke
  // nobody, and the futex would wait for the whole period: each is stored
  // before g_wake moves.
  if (g_pause_requested.load(std::memory_order_acquire)) return;
  if (g_credential_call.posted.load(std::memory_order_acquire) !=
      g_credential_call.done.load(std::memory_order_relaxed)) {
    return FollowCredentialsNow();
  }
  // A flush requested after `seen` was read changes g_wake, and the futex
  // returns at once. One still pending from before is an exiting process
  // whose round failed (no collector yet): retry soon, without spinning.
  if (g_flush_requested.load(std::memory_order_acquire) != g_flush_done.load(std::memory_order_relaxed)) {
    wait_ms = 1;
  }
  timespec ts{static_cast<time_t>(wait_ms / 1000), static_cast<long>(wait_ms % 1000) * 1000000};
  g_sleeping.store(true, std::memory_order_seq_cst);
  sys::Futex(&g_wake, FUTEX_WAIT_PRIVATE, seen, &ts);
  g_sleeping.store(false, std::memory_order_relaxed);
  FollowCredentialsNow();
  if (s->sock.fd() < 0) return;
  if (!s->sock.StillOurs()) return Disconnect(s);
  char sink[512];
  long n = sys::Recv(s->sock.fd(), sink, sizeof(sink), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK && n != -EINTR)) Disconnect(s);
}

void RunOnce(SenderState* s) {
  FollowCredentialsNow();
  uint64_t flush_requested = g_flush_requested.load(std::memory_order_acquire);
  // The process is exiting and waits for this round: no backoff, drain all.
  bool exiting = flush_requested != g_flush_done.load(std::memory_order_relaxed);
  uint64_t round_ns = MonoNs();
  NoteEventTime();
  uint32_t drained = 0;
  if (s->sock.fd() < 0 && (exiting || MonoMs() >= s->next_connect_ms)) {
    if (Connect(s)) {
      s->backoff_ms = kBackoffMinMs;
    } else {
      if (s->sock.fd() >= 0) Disconnect(s);
      s->backoff_ms = s->backoff_ms * 2 > kBackoffMaxMs ? kBackoffMaxMs : s->backoff_ms * 2;
      s->next_connect_ms = MonoMs() + s->backoff_ms;
    }
    g_tried_connect.store(true, std::memory_order_release);
  }
  // Connected or not (free() pays either way); a scan of 8 KiB by default,
  // so a heap that grows is read through the fine filter within a round.
  g_shim.table.ChooseFilter();
  if (s->sock.fd() < 0) {
    DiscardRing(s);  // nobody to tell; the next connection resyncs anyway
  } else {
    bool ok = true;
    ok = SendModulesIfChanged(s);
    if (ok && g_shim.resync_needed.exchange(false, std::memory_order_acq_rel)) ok = Resync(s);
    drained = ok ? DrainRing(s, &ok) : 0;
    // At exit, what other threads push meanwhile is bounded by a few rings.
    bool more = drained > 0;
    for (int rounds = 0; exiting && ok && more && rounds < 64; ++rounds) more = DrainRing(s, &ok) > 0;
    if (ok && (MonoNs() >= s->next_stats_ns || exiting)) ok = SendStats(s);
    if (ok) ok = Flush(s);
    // Done only once delivered: an exiting process that is still waiting
    // gets another round (a reconnect) until its deadline.
    if (ok) g_flush_done.store(flush_requested, std::memory_order_release);
  }
  // A producer that claimed a ring position and has not published it 250 ms
  // later has left its push for good (a signal handler jumped out of it), and
  // every event after it would wait for ever (event_ring.h). Its event is
  // lost, counted as dropped, and the collector gets the table again, as
  // after any drop (the producer changed the table before it claimed the
  // position).
  if (g_shim.ring.GiveUpStalled(round_ns, kUnpublishedGiveUpNs)) {
    s->ring_complete = false;
    g_shim.counters.dropped_events.fetch_add(1, std::memory_order_relaxed);
    g_shim.resync_needed.store(true, std::memory_order_release);
  }
  // Once the application samples, map what its samples will touch next, off
  // its threads. Not before: most short processes never sample. The filters
  // once per process image: a forked child shares them copy-on-write
  // (mapping them would copy every page) and often execs at once. The ring
  // as its pushes come near the pages not yet mapped (a child's, wiped at
  // fork, fault in as they are used, up to where the parent had mapped).
  if (!g_prefaulted && g_shim.ring.used()) {
    g_prefaulted = true;
    g_shim.table.PrefaultFilters(kPrefaultMaxBytes);
    g_shim.ring.WipeOnFork();  // before the prefault: no child copies those pages
  }
  if (g_prefaulted) g_shim.ring.PrefaultAhead(kPrefaultMaxBytes);
  s->sleep_ms = SenderSleepMs(s->sleep_ms, drained, round_ns - s->last_round_ns, g_shim.ring.capacity());
  s->last_round_ns = round_ns;
  if (s->sleep_ms > 0) Idle(s, s->sleep_ms);
}

int SenderMain(void*) {
  sys::Prctl(PR_SET_NAME, reinterpret_cast<long>("heapwatch"));
  SenderState* s = g_state;
  long n = sys::Readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
  s->exe[n > 0 ? n : 0] = '\0';
  while (!g_pause_requested.load(std::memory_order_acquire)) RunOnce(s);
  return 0;
}

// A forked child's g_state, the parent's, made this process's own. The
// parent's socket was closed in the child already (SenderForkChild).
void ResetInheritedState(SenderState* s) {
  s->sock.Forget();
  s->out.Clear();
  s->batch_len = 0;
  s->ever_connected = false;
  s->ring_complete = false;  // the table is the parent's copy: resync
  s->resync_generation = 0;
  s->next_connect_ms = 0;
  s->backoff_ms = kBackoffMinMs;
  s->next_stats_ns = 0;
}

// How far below the thread pointer the sender's code may reach into thread
// storage: the shim's own (t_thread and the rest of its block) and the C
// library's errno, with room around both. The task gets a thread area of
// its own that deep (StartSender).
size_t ThreadAreaReach() {
  const auto tp = reinterpret_cast<uintptr_t>(__builtin_thread_pointer());
  uintptr_t reach = tp - reinterpret_cast<uintptr_t>(&t_thread);
  const uintptr_t to_errno = tp - reinterpret_cast<uintptr_t>(&errno);
  if (to_errno > reach) reach = to_errno;
  constexpr size_t kRoom = 16 << 10;
  return (reach + kRoom + kPageBytes - 1) & ~(kPageBytes - 1);
}

// The task's memory: a guard page, its stack, and its thread area: the
// thread storage ThreadAreaReach covers below the thread pointer and a page
// above it for the thread control block (glibc's `struct pthread` is ~2 KiB
// there; only its self pointers and stack guard are set).
size_t TaskBytes() { return kPageBytes + kSenderStackBytes + ThreadAreaReach() + kPageBytes; }

bool MapTask() {
  if (g_task_memory) return true;
  const size_t bytes = TaskBytes();
  auto* memory = static_cast<uint8_t*>(MapZeroed(bytes));
  if (!memory) return false;
  if (sys::Mprotect(memory, kPageBytes, PROT_NONE) != 0 || sys::Madvise(memory, bytes, MADV_DONTFORK) != 0) {
    Unmap(memory, bytes);
    return false;
  }
  g_task_memory = memory;
  g_task_bytes = bytes;
  return true;
}

// The task's thread pointer (x86-64's layout: thread storage below it, the
// control block above), with the control block's words the code compiled
// for this thread may read: its self pointers (words 0 and 2) and
// the stack and pointer guards (0x28, 0x30), copied from this thread's.
void* TaskThreadPointer() {
  uint8_t* tp = g_task_memory + g_task_bytes - kPageBytes;
  const auto* mine = static_cast<const uint8_t*>(__builtin_thread_pointer());
  memcpy(tp + 0x28, mine + 0x28, 16);
  const uintptr_t self = reinterpret_cast<uintptr_t>(tp);
  memcpy(tp, &self, sizeof(self));
  memcpy(tp + 16, &self, sizeof(self));
  return tp;
}

}  // namespace

uint64_t SenderAddressSpace() {
  return sizeof(SenderState) + kOutBytes + kModuleBytes + kBatchEvents * sizeof(wire::EventRecord) +
         kSentSlots * sizeof(uint64_t) + TaskBytes();
}

// The sender is a task of the process's made with clone(), not a thread of
// glibc's (pthread_create): glibc counts its threads, and from the second on
// it locks every stdio call and takes its locked malloc paths and its slower
// fork for the rest of the process's life. A single-threaded program paid
// that for the sender: getc and putc loops 1.5x (BENCHMARKS.md, "Seventeenth
// session"). So the task must never call into glibc where glibc would know
// its threads: no malloc, no locks, no loader (dl_iterate_phdr, dlopen), no
// errno: system calls are raw (raw_syscall.h), libunwind is loaded by the
// sampling threads (recorder.cc), module maps are read from /proc/self/maps
// (modules.h), and the credential calls that glibc makes every thread of its
// own make are made again here (SenderFollowCredentials). Its thread area is
// its own (TaskThreadPointer), so that a thread variable it touches is not
// another thread's. Every signal blocked for life; its stack is mapped once
// and not copied by fork.
bool StartSender() {
  if (g_state && g_state_inherited) {
    ResetInheritedState(g_state);
    g_state_inherited = false;
  }
  if (!g_state) {
    void* mem = MapZeroed(sizeof(SenderState));
    if (!mem) return false;
    SenderState* s = new (mem) SenderState();
    // A forked child reuses the state, not these buffers' contents nor the
    // set of stacks sent (ResetInheritedState, and its first connection):
    // fork copies none of their pages. One mapping for the four: a mapping
    // is ~1-2 us of every fork on the development VM (BENCHMARKS.md,
    // "Fifteenth session"), and four made one after another were two or
    // three, wherever the kernel found room for each.
    constexpr size_t kSentBytes = kSentSlots * sizeof(uint64_t);
    constexpr size_t kBatchBytes = kBatchEvents * sizeof(wire::EventRecord);
    static_assert(kSentBytes % 4096 == 0 && kOutBytes % 64 == 0 && kModuleBytes % 64 == 0);
    auto* wiped = static_cast<uint8_t*>(MapZeroedWipedOnFork(kSentBytes + kOutBytes + kModuleBytes + kBatchBytes));
    if (!wiped || !s->sent.Init(kSentSlots, reinterpret_cast<uint64_t*>(wiped))) return false;
    s->out_mem = wiped + kSentBytes;
    s->module_mem = s->out_mem + kOutBytes;
    s->batch = reinterpret_cast<wire::EventRecord*>(s->module_mem + kModuleBytes);
    s->out = FrameWriter(s->out_mem, kOutBytes);
    g_state = s;
  }
  if (!MapTask()) return false;
  void* stack_top = g_task_memory + kPageBytes + kSenderStackBytes;
  constexpr int kFlags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                         CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
  auto* tid = reinterpret_cast<pid_t*>(&g_task_tid);
  const LibcFunctions& libc = Libc();
  sigset_t all, old;
  FillSignalSet(&all);
  libc.pthread_sigmask(SIG_SETMASK, &all, &old);
  const int rc = libc.clone(SenderMain, stack_top, kFlags, nullptr, tid, TaskThreadPointer(), tid);
  libc.pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc <= 0) return false;
  g_thread.store(static_cast<int>(Thread::kRunning), std::memory_order_release);
  return true;
}

bool PauseSender() {
  if (g_thread.load(std::memory_order_acquire) != static_cast<int>(Thread::kRunning) ||
      !InShimsProcess()) {
    return false;
  }
  g_pause_requested.store(true, std::memory_order_release);
  WakeSender();
  for (int32_t tid; (tid = g_task_tid.load(std::memory_order_acquire)) != 0;) {
    sys::Futex(&g_task_tid, FUTEX_WAIT, static_cast<uint32_t>(tid), nullptr);
  }
  g_pause_requested.store(false, std::memory_order_relaxed);
  g_thread.store(static_cast<int>(Thread::kNone), std::memory_order_release);
  g_sleeping.store(false, std::memory_order_relaxed);
  return true;
}

void ResumeSender() {
  if (g_shim.state.load(std::memory_order_acquire) == static_cast<int>(ShimState::kOn) &&
      !StartSender()) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
  }
}

void FollowCredentialsNow() {
  CredentialCall& call = g_credential_call;
  const uint32_t posted = call.posted.load(std::memory_order_acquire);
  if (posted == call.done.load(std::memory_order_relaxed)) return;
  call.result = InlineSyscall(call.number, call.a, call.b, call.c);
  call.done.store(posted, std::memory_order_release);
  sys::Futex(&call.done, FUTEX_WAKE_PRIVATE, 1, nullptr);
}

void SenderFollowCredentials(long number, long a, long b, long c) {
  SenderPauseScope one_at_a_time;  // one call at a time, and no pause meanwhile
  if (g_thread.load(std::memory_order_acquire) != static_cast<int>(Thread::kRunning) || !InShimsProcess()) {
    return;  // no sender, or another process's (a vfork child's call)
  }
  CredentialCall& call = g_credential_call;
  call.number = number;
  call.a = a;
  call.b = b;
  call.c = c;
  const uint32_t ticket = call.posted.load(std::memory_order_relaxed) + 1;
  call.posted.store(ticket, std::memory_order_release);
  WakeSender();
  const uint64_t deadline = MonoNs() + kForkWaitNs;
  uint32_t done;
  while ((done = call.done.load(std::memory_order_acquire)) != ticket) {
    const uint64_t now = MonoNs();
    if (now >= deadline) break;
    const uint64_t left = deadline - now;
    timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    sys::Futex(&call.done, FUTEX_WAIT_PRIVATE, done, &ts);
  }
  if (done == ticket && call.result == 0) return;
  // Started again from this thread, the sender has its credentials. The
  // call it did not make is void.
  if (!PauseSender()) return;
  call.done.store(call.posted.load(std::memory_order_relaxed), std::memory_order_relaxed);
  ResumeSender();
}

void NudgeSender() {
  if (!g_sleeping.load(std::memory_order_seq_cst)) return;
  int saved_errno = errno;  // called from inside malloc
  WakeSender();
  errno = saved_errno;
}

void FlushSenderAtExit(int timeout_ms) {
  if (g_thread.load(std::memory_order_acquire) != static_cast<int>(Thread::kRunning)) return;
  if (!InShimsProcess()) return;  // the sender is another process's
  uint64_t deadline = MonoMs() + static_cast<uint64_t>(timeout_ms);
  // A request also makes the sender connect at once (no backoff) if it is
  // not connected. Each connected round that delivers everything records in
  // done the request count it read when it began, so done >= ticket means a
  // whole round (drain, stats, flush) began after this request and
  // succeeded: what the process pushed before now is in the socket.
  uint64_t ticket = g_flush_requested.fetch_add(1, std::memory_order_acq_rel) + 1;
  WakeSender();
  while (g_flush_done.load(std::memory_order_acquire) < ticket) {
    // Nobody to deliver to: the collector is absent (no socket, refused).
    // A full listen backlog is worth retrying; so is a short-lived process
    // whose sender has not tried yet.
    if (g_tried_connect.load(std::memory_order_acquire) &&
        !g_connected.load(std::memory_order_acquire) &&
        !g_connect_retryable.load(std::memory_order_relaxed)) {
      return;
    }
    if (MonoMs() >= deadline) return;
    sys::Poll(nullptr, 0, 1);
  }
}

namespace {
pthread_mutex_t g_pause_lock = PTHREAD_MUTEX_INITIALIZER;
}  // namespace

// Both or neither: every C library has them.
SenderPauseScope::SenderPauseScope() {
  if (const auto lock = Libc().pthread_mutex_lock) lock(&g_pause_lock);
}
SenderPauseScope::~SenderPauseScope() {
  if (const auto unlock = g_libc.pthread_mutex_unlock) unlock(&g_pause_lock);
}

void StopSender(int timeout_ms) {
  SenderPauseScope one_at_a_time;
  FlushSenderAtExit(timeout_ms);
  if (!PauseSender() || !g_state) return;
  Disconnect(g_state);  // the thread is gone: nothing else uses the state now
}

HEAPWATCH_FORK_CHILD_CODE void SenderForkChild() {
  // The parent's task and its memory are not here (MADV_DONTFORK).
  g_task_memory = nullptr;
  g_task_tid.store(0, std::memory_order_relaxed);
  g_thread.store(static_cast<int>(Thread::kNone), std::memory_order_relaxed);
  g_connected.store(false, std::memory_order_relaxed);
  g_tried_connect.store(false, std::memory_order_relaxed);
  g_connect_retryable.store(false, std::memory_order_relaxed);
  g_flush_requested.store(0, std::memory_order_relaxed);
  g_flush_done.store(0, std::memory_order_relaxed);
  g_sleeping.store(false, std::memory_order_relaxed);  // the parent's sender slept, not ours
  if (g_state) {
    g_state->sock.CloseKeepingNumber();  // the parent's connection, not ours
    g_state_inherited = true;            // the rest at the child's sender start
  }
  // The child's own sender starts at its first sample (recorder.cc).
}

}  // namespace heapwatch::preload
