// The sender thread's life: its start (at the first sample), rounds, sleep,
// pause, the exit flush and fork. What it writes on a connection, and why a
// resync is correct, is sender_connection.cc's.
#include "sender.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <new>

#include "clock.h"
#include "fork_words.h"
#include "modules.h"
#include "raw_memory.h"
#include "raw_syscall.h"
#include "sender_connection.h"
#include "unwinder.h"

namespace heapwatch::preload {
namespace {

// The ring and the filters are mapped after the process's first sample, up to
// this size each (512 KiB and 72 KiB by default); larger ones fault in as
// they are used. Inherited by a forked child (see RunOnce).
constexpr size_t kPrefaultMaxBytes = size_t{1} << 20;
bool g_prefaulted = false;

enum class Thread : int { kNone = 0, kRunning = 1 };
constexpr size_t kSenderStackBytes = 256 << 10;

// How long a claimed ring position may stay unpublished (RunOnce).
constexpr uint64_t kUnpublishedGiveUpNs = 250000000;

SenderState* g_state = nullptr;  // mmap'd once; survives fork (the child reuses it)
// Set in a forked child: g_state is the parent's, reset when the child's own
// sender starts (StartSender), not in the fork handler: that was a write
// to its page, a page fault of every fork, also of children that exec at
// once. Only the sender uses the state, and the child has none until then.
bool g_state_inherited = false;
std::atomic<int> g_thread{0};
pthread_t g_sender;  // joinable, joined only by PauseSender
// Set by PauseSender: the sender ends after its round (SenderMain).
std::atomic<bool> g_pause_requested{false};
std::atomic<bool> g_tried_connect{false};
// Set by a sender that ended at its start: libunwind could not be loaded,
// and the shim is off (SenderMain). Nothing waits for it to flush.
std::atomic<bool> g_ended{false};
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
// True while the sender may hold the loader's lock (inside its gate, around
// dl_iterate_phdr). Not in the fork words' page: a copy made without fork's
// handlers reads it (AdoptCopy), and that page is zero there.
std::atomic<bool> g_sender_in_loader{false};

}  // namespace

// The sender's side of a Dekker pair with SenderForkPrepare (fork_words.h):
// each stores its word, then reads the other's. The sender goes in only when
// no fork is being prepared; a prepare handler waits until it is out.
void LockLoader() {
  ForkWords& w = *g_fork_words;
  for (;;) {
    w.sender.store(1, std::memory_order_seq_cst);
    if (w.forks.load(std::memory_order_seq_cst) == 0) break;
    w.sender.store(0, std::memory_order_release);
    while (w.forks.load(std::memory_order_acquire) != 0) sys::SchedYield();
  }
  g_sender_in_loader.store(true, std::memory_order_seq_cst);
}
void UnlockLoader() {
  g_sender_in_loader.store(false, std::memory_order_seq_cst);
  g_fork_words->sender.store(0, std::memory_order_release);
}

namespace {

// Ends the sender's sleep in Idle now (or makes its next one return at once).
void WakeSender() {
  g_wake.fetch_add(1, std::memory_order_acq_rel);
  syscall(SYS_futex, &g_wake, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// Sleeps until the idle period ends or something wakes the sender (an
// exiting process, a ring filling up); then notices a collector that hung
// up, and reads and ignores anything it sent.
void Idle(SenderState* s, uint64_t wait_ms) {
  uint32_t seen = g_wake.load(std::memory_order_acquire);
  // A flush requested after `seen` was read changes g_wake, and the futex
  // returns at once. One still pending from before is an exiting process
  // whose round failed (no collector yet): retry soon, without spinning.
  if (g_flush_requested.load(std::memory_order_acquire) != g_flush_done.load(std::memory_order_relaxed)) {
    wait_ms = 1;
  }
  timespec ts{static_cast<time_t>(wait_ms / 1000), static_cast<long>(wait_ms % 1000) * 1000000};
  g_sleeping.store(true, std::memory_order_seq_cst);
  syscall(SYS_futex, &g_wake, FUTEX_WAIT_PRIVATE, seen, &ts, nullptr, 0);
  g_sleeping.store(false, std::memory_order_relaxed);
  if (s->sock.fd() < 0) return;
  if (!s->sock.StillOurs()) return Disconnect(s);
  char sink[512];
  long n = sys::Recv(s->sock.fd(), sink, sizeof(sink), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK && n != -EINTR)) Disconnect(s);
}

void RunOnce(SenderState* s) {
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
    LockLoader();
    uint64_t generation = ModulesGeneration();
    UnlockLoader();
    if (generation != s->modules_generation) ok = SendModules(s);
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
  // its threads. Not before: most short processes never sample. Once per
  // process image: a forked child shares the filters copy-on-write (mapping
  // them would copy every page) and often execs at once.
  if (!g_prefaulted && g_shim.ring.used()) {
    g_prefaulted = true;
    g_shim.table.PrefaultFilters(kPrefaultMaxBytes);
    g_shim.ring.WipeOnFork();  // before the prefault: no child copies those pages
    g_shim.ring.Prefault(kPrefaultMaxBytes);
  }
  s->sleep_ms = SenderSleepMs(s->sleep_ms, drained, round_ns - s->last_round_ns, g_shim.ring.capacity());
  s->last_round_ns = round_ns;
  if (s->sleep_ms > 0) Idle(s, s->sleep_ms);
}

void* SenderMain(void*) {
  t_thread.guard = 1;  // for life: nothing this thread does is sampled
  // Its malloc and calloc come from the shim's arena (recorder.h,
  // SenderHeapAlloc): a sampler that counts no bytes sends every allocation
  // to the slow path, which the guard keeps unsampled.
  t_thread.sender_heap = true;
  t_thread.sampler.bytes_left = 0;
  prctl(PR_SET_NAME, "heapwatch", 0, 0, 0);
  // First thing: the sampling thread waits for it (unwinder.h). Again
  // every 10 ms while another thread's load (or a fork) held it up.
  bool go_on = LoadUnwinderNow(false);
  while (go_on && !UnwinderLoadSettled() && !g_pause_requested.load(std::memory_order_acquire)) {
    timespec ts{0, 10000000};
    sys::Nanosleep(&ts);
    go_on = LoadUnwinderNow(false);
  }
  if (!go_on) {
    g_ended.store(true, std::memory_order_release);
    return nullptr;
  }
  SenderState* s = g_state;
  long n = sys::Readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
  s->exe[n > 0 ? n : 0] = '\0';
  while (!g_pause_requested.load(std::memory_order_acquire)) RunOnce(s);
  return nullptr;
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

}  // namespace

uint64_t SenderAddressSpace() {
  return sizeof(SenderState) + kOutBytes + kModuleBytes + kBatchEvents * sizeof(wire::EventRecord) +
         kSentSlots * sizeof(uint64_t) + kSenderStackBytes + 4096;
}

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
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  // Address space the application's limits count (RLIMIT_AS, strict
  // overcommit): the default would be RLIMIT_STACK's 8 MiB. The sender's
  // deepest call is a few KiB (its path buffers, libc's socket and
  // dl_iterate_phdr calls); no signal handler runs here (all blocked).
  pthread_attr_setstacksize(&attr, kSenderStackBytes);
  ++t_thread.guard;  // pthread_create allocates
  int rc = pthread_create(&g_sender, &attr, SenderMain, nullptr);
  --t_thread.guard;
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) return false;
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
  NoCancellation no_cancellation;  // pthread_join
  pthread_join(g_sender, nullptr);
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

void NudgeSender() {
  if (!g_sleeping.load(std::memory_order_seq_cst)) return;
  int saved_errno = errno;  // called from inside malloc
  WakeSender();
  errno = saved_errno;
}

void FlushSenderAtExit(int timeout_ms) {
  if (g_thread.load(std::memory_order_acquire) != static_cast<int>(Thread::kRunning)) return;
  if (!InShimsProcess()) return;  // the sender is another process's
  if (g_ended.load(std::memory_order_acquire)) return;
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

SenderPauseScope::SenderPauseScope() { pthread_mutex_lock(&g_pause_lock); }
SenderPauseScope::~SenderPauseScope() { pthread_mutex_unlock(&g_pause_lock); }

void StopSender(int timeout_ms) {
  SenderPauseScope one_at_a_time;
  FlushSenderAtExit(timeout_ms);
  if (!PauseSender() || !g_state) return;
  Disconnect(g_state);  // the thread is gone: nothing else uses the state now
}

bool SenderHoldsLoader() { return g_sender_in_loader.load(std::memory_order_acquire); }

void SenderForkPrepare() {
  ForkWords& w = *g_fork_words;
  w.forks.fetch_add(1, std::memory_order_seq_cst);
  // The sender is out within microseconds, unless inside it waits for the
  // loader's lock, held by a thread that waits for this one (a
  // dl_iterate_phdr callback of the application's that wants a lock the
  // forking thread holds). After a second the child is born anyway: the
  // sender did not hold the loader's lock, and the thread that does is not
  // in the child, which finds it so (loader_lock.h) and is not profiled
  // (kForkWaitNs, clock.h).
  uint64_t deadline = 0;
  YieldUntil([&w] { return w.sender.load(std::memory_order_seq_cst) == 0; }, &deadline);
}
// On the fork words' page: no copy-on-write fault (fork_words.h).
void SenderForkParent() { g_fork_words->forks.fetch_sub(1, std::memory_order_release); }

void SenderForkChild() {
  // The fork words are zero here unless static (fork_words.h). The flag
  // below is true only in a copy made while the sender was inside its gate
  // (AdoptCopy turns that child off), or in a child forked after the prepare
  // handler stopped waiting for it (the loader's lock then held by a thread
  // not in the child: not profiled, loader_lock.h): written only then, so as
  // not to write its page.
  if (!ForkWordsWiped()) {
    g_fork_words->forks.store(0, std::memory_order_relaxed);
    g_fork_words->sender.store(0, std::memory_order_relaxed);
  }
  if (g_sender_in_loader.load(std::memory_order_relaxed)) g_sender_in_loader.store(false, std::memory_order_relaxed);
  g_thread.store(static_cast<int>(Thread::kNone), std::memory_order_relaxed);
  g_connected.store(false, std::memory_order_relaxed);
  g_tried_connect.store(false, std::memory_order_relaxed);
  g_ended.store(false, std::memory_order_relaxed);
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
