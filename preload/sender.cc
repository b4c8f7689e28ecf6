#include "sender.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <new>

#include <heapwatch/wire.h>

#include "frame_writer.h"
#include "modules.h"
#include "sender_pacing.h"
#include "descriptors.h"
#include "raw_memory.h"
#include "recorder.h"
#include "sent_stacks.h"

// Resync, and why replaying the ring after the table scan is correct.
//
// Let P be the ring position where the sender stops discarding (everything
// before P is thrown away, everything from P on is sent after kResyncEnd).
// Producers change the table BEFORE they claim their ring position, so:
//  (1) every event before P changed the table before the scan started;
//  (2) an event from P on changed the table at some unknown time, before,
//      during or after the scan, but it is replayed after kResyncEnd.
// Fix one address. Its events (alloc, free, alloc, ...) are totally ordered
// in the ring (ring.h: a later push gets a later position; a free is pushed
// before the real free, an alloc after the real malloc returned, so the
// allocator's own ordering of the address's lifetimes carries over). Each
// event fully determines the address's state ("live with these values" or
// "not live"), so the collector's final state is the effect of the last event
// it applied. If the address has events from P on, the last one is replayed
// last and the final state is right whatever the scan saw. If not, no
// mutation of it happens after the scan started (any later mutation would
// have an event at or after P), so the scan saw its true state.
// The collector must therefore treat an alloc of a live address as a
// replacement and a free of an unknown address as a no-op.
//
// A dropped event (ring full) marks resync_needed after its table change; the
// sender clears the flag before discarding, so the change is covered by (1).
//
// The first connection of a process skips the resync when the ring still
// holds every event since recording began (nothing dropped, nothing
// discarded while unconnected, no earlier connection, not a forked child):
// replaying the ring from its first event rebuilds the table exactly, by the
// same per-address argument with P = the first event, and unlike a table scan
// it delivers the allocations that were freed before the connection, which
// the collector counts in its cumulative totals. A short-lived process
// (`ls`, `cat`) does most of its work before its sender first connects.

namespace heapwatch::preload {
namespace {

constexpr size_t kOutBytes = wire::kMaxFrameBytes + (256u << 10);
constexpr size_t kModuleBytes = 1u << 20;
// Events go from the ring into a batch, a batch into the output as one
// Events frame, and the output to the socket once it holds kEagerFlushBytes
// (and at the end of every round). Both buffers are mapped lazily, so these
// sizes are also the pages they ever fault in: with a batch of 8192 events
// (320 KiB) and the whole round in the output, a short sampling process
// took ~90 page faults in the sender, ~1 ms on the development VM.
constexpr uint32_t kBatchEvents = 1024;
constexpr size_t kEagerFlushBytes = 64u << 10;
// Events one DrainRing takes at most.
constexpr uint32_t kDrainEvents = 32768;
constexpr uint64_t kSentSlots = 1u << 18;
constexpr int kWriteDeadlineMs = 2000;
constexpr uint64_t kBackoffMinMs = 10, kBackoffMaxMs = 500;
constexpr uint64_t kStatsPeriodNs = 1000000000ull;
// The ring and the filters are mapped after the process's first sample, up to
// this size each (512 KiB and 72 KiB by default); larger ones fault in as
// they are used. Inherited by a forked child (see RunOnce).
constexpr size_t kPrefaultMaxBytes = size_t{1} << 20;
bool g_prefaulted = false;

enum class Thread : int { kNone = 0, kRunning = 1 };
constexpr size_t kSenderStackBytes = 256 << 10;

// How long a claimed ring position may stay unpublished (RunOnce).
constexpr uint64_t kUnpublishedGiveUpNs = 250000000;

struct State {
  OwnSocket sock;  // the connection (descriptors.h: the application may take its number)
  bool ever_connected = false;
  // The ring holds every event since recording began (see the top of the file).
  bool ring_complete = true;
  uint64_t resync_generation = 0;
  uint64_t modules_generation = 0;
  uint64_t next_connect_ms = 0;
  uint64_t backoff_ms = kBackoffMinMs;
  uint64_t next_stats_ns = 0;
  uint64_t sleep_ms = kSenderSleepMinMs;
  uint64_t last_round_ns = 0;  // when the previous round began (rate of events)
  uint32_t batch_len = 0;
  uint8_t* out_mem = nullptr;
  uint8_t* module_mem = nullptr;
  wire::EventRecord* batch = nullptr;
  SentStacks sent;  // the stacks sent on this connection
  FrameWriter out{nullptr, 0};
  char exe[wire::kMaxPathBytes + 1] = {};
};

State* g_state = nullptr;  // mmap'd once; survives fork (the child reuses it)
std::atomic<int> g_thread{0};
pthread_t g_sender;  // joinable, joined only by PauseSender
// Set by PauseSender: the sender ends after its round (SenderMain).
std::atomic<bool> g_pause_requested{false};
std::atomic<bool> g_connected{false};
std::atomic<bool> g_tried_connect{false};
// The last connect failed in a way a retry may cure (the collector's listen
// backlog was full): an exiting process keeps trying until its deadline.
std::atomic<bool> g_connect_retryable{false};
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
// Held by the sender around dl_iterate_phdr and by fork's prepare handler, so
// a child is never born while the sender holds the loader's lock.
std::atomic<bool> g_loader_busy{false};

void LockLoader() {
  bool expected = false;
  while (!g_loader_busy.compare_exchange_weak(expected, true, std::memory_order_acquire)) {
    expected = false;
    sched_yield();
  }
}
void UnlockLoader() { g_loader_busy.store(false, std::memory_order_release); }

uint64_t MonoNs() { return ClockNs(CLOCK_MONOTONIC); }
uint64_t MonoMs() { return MonoNs() / 1000000; }

void Disconnect(State* s) {
  s->sock.Close();
  s->out.Clear();
  s->batch_len = 0;
  g_connected.store(false, std::memory_order_release);
  s->next_connect_ms = MonoMs() + s->backoff_ms;
}

// Sends the whole output buffer. The sender may wait here (never the
// application), up to a deadline after which the collector counts as gone.
bool Flush(State* s) {
  uint64_t deadline = MonoMs() + kWriteDeadlineMs;
  if (s->out.size() > 0 && !s->sock.StillOurs()) {
    Disconnect(s);
    return false;
  }
  while (s->out.size() > 0) {
    ssize_t n = send(s->sock.fd(), s->out.data(), s->out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      g_shim.counters.bytes_sent.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      s->out.Consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      uint64_t now = MonoMs();
      if (now >= deadline) break;
      pollfd p{s->sock.fd(), POLLOUT, 0};
      poll(&p, 1, static_cast<int>(deadline - now < 100 ? deadline - now : 100));
      continue;
    }
    break;
  }
  if (s->out.size() == 0) return true;
  Disconnect(s);
  return false;
}

bool Reserve(State* s, size_t payload) {
  if (FrameWriter::FrameBytes(payload) <= s->out.available()) return true;
  return Flush(s);
}

bool EmitBatch(State* s) {
  if (s->batch_len == 0) return true;
  if (!Reserve(s, sizeof(wire::EventsHeader) + s->batch_len * sizeof(wire::EventRecord))) {
    return false;
  }
  s->out.AppendEvents(s->batch, s->batch_len);
  s->batch_len = 0;
  return s->out.size() < kEagerFlushBytes || Flush(s);
}

bool AddEvent(State* s, const wire::EventRecord& ev) {
  if (s->batch_len == kBatchEvents && !EmitBatch(s)) return false;
  s->batch[s->batch_len++] = ev;
  return true;
}

// Makes sure the collector has the stack before an event naming it. Its kStack
// frame goes straight to the output, ahead of the pending batch. Returns false
// (event to be skipped) if the stack is unknown; *io_ok turns false on a
// connection error.
bool EnsureStack(State* s, uint64_t id, bool* io_ok) {
  if (s->sent.Contains(id)) return true;
  const uint64_t* pcs = nullptr;
  uint32_t depth = 0;
  StackDepot::FindResult r = g_shim.depot.Find(id, &pcs, &depth);
  // Another thread may still be copying the pcs in; it is running (or was
  // interrupted by a signal handler that will return), so wait a little.
  for (int spins = 0; r == StackDepot::FindResult::kNotReady && spins < 2000; ++spins) {
    sched_yield();
    r = g_shim.depot.Find(id, &pcs, &depth);
  }
  if (r != StackDepot::FindResult::kFound) {
    g_shim.counters.unwind_failures.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (!Reserve(s, sizeof(wire::Stack) + depth * sizeof(uint64_t))) {
    *io_ok = false;
    return false;
  }
  s->out.AppendStack(id, pcs, depth);
  s->sent.Add(id);
  return true;
}

bool SendModules(State* s) {
  LockLoader();
  s->modules_generation = ModulesGeneration();
  FrameWriter staging(s->module_mem, kModuleBytes);
  WriteModules(&staging, s->exe);
  UnlockLoader();
  if (!EmitBatch(s)) return false;
  if (staging.size() > s->out.available() && !Flush(s)) return false;
  return s->out.AppendRaw(staging.data(), staging.size());
}

bool SendStats(State* s) {
  const Counters& c = g_shim.counters;
  wire::Stats st{c.sampled_allocs.load(std::memory_order_relaxed),
                 c.sampled_frees.load(std::memory_order_relaxed),
                 c.dropped_events.load(std::memory_order_relaxed),
                 c.table_full.load(std::memory_order_relaxed),
                 c.unwind_failures.load(std::memory_order_relaxed),
                 c.reconnects.load(std::memory_order_relaxed),
                 g_shim.table.Size(),
                 c.bytes_sent.load(std::memory_order_relaxed)};
  if (!EmitBatch(s) || !Reserve(s, sizeof(st))) return false;
  s->out.Append(wire::FrameType::kStats, &st, sizeof(st));
  s->next_stats_ns = MonoNs() + kStatsPeriodNs;
  return true;
}

// Counts the sampled allocations and frees whose events the sender takes
// from the ring, and adds them to the shared counters once it is done (an
// event dropped at Push is counted there, see PushOrDrop). The threads that
// sample do not count: one counter that every sample and every sampled free
// changed was a cache line passed between their cores.
class PoppedTally {
 public:
  PoppedTally() = default;
  PoppedTally(const PoppedTally&) = delete;
  PoppedTally& operator=(const PoppedTally&) = delete;
  ~PoppedTally() {
    if (allocs_) g_shim.counters.sampled_allocs.fetch_add(allocs_, std::memory_order_relaxed);
    if (frees_) g_shim.counters.sampled_frees.fetch_add(frees_, std::memory_order_relaxed);
  }
  void Add(const wire::EventRecord& ev) {
    if (ev.kind == static_cast<uint32_t>(wire::EventKind::kAlloc)) {
      ++allocs_;
    } else if (ev.kind == static_cast<uint32_t>(wire::EventKind::kFree)) {
      ++frees_;
    }
  }

 private:
  uint64_t allocs_ = 0, frees_ = 0;
};

bool Resync(State* s) {
  if (!EmitBatch(s)) return false;
  wire::EventRecord ev;
  PoppedTally tally;  // the table, sent next, holds what these events did
  while (g_shim.ring.Pop(&ev)) tally.Add(ev);
  wire::ResyncMarker begin{++s->resync_generation, 0};
  if (!Reserve(s, sizeof(begin))) return false;
  s->out.Append(wire::FrameType::kResyncBegin, &begin, sizeof(begin));
  bool ok = true;
  uint64_t count = 0;
  g_shim.table.ForEach([&](const LiveTable::Entry& e) {
    if (!ok || !EnsureStack(s, e.stack_id, &ok)) return;
    if (!AddEvent(s, {static_cast<uint32_t>(wire::EventKind::kAlloc), 0, e.address, e.size,
                      e.stack_id, e.time_ns})) {
      ok = false;
      return;
    }
    ++count;
  });
  if (!ok || !EmitBatch(s)) return false;
  wire::ResyncMarker end{s->resync_generation, count};
  if (!Reserve(s, sizeof(end))) return false;
  s->out.Append(wire::FrameType::kResyncEnd, &end, sizeof(end));
  return true;
}

// Returns the number of events taken from the ring.
uint32_t DrainRing(State* s, bool* io_ok) {
  wire::EventRecord ev;
  uint32_t n = 0;
  PoppedTally tally;
  while (n < kDrainEvents && g_shim.ring.Pop(&ev)) {
    ++n;
    tally.Add(ev);
    if (ev.kind == static_cast<uint32_t>(wire::EventKind::kAlloc) &&
        !EnsureStack(s, ev.stack_id, io_ok)) {
      if (!*io_ok) return n;
      continue;
    }
    if (!AddEvent(s, ev)) {
      *io_ok = false;
      return n;
    }
  }
  if (!EmitBatch(s)) *io_ok = false;
  return n;
}

void DiscardRing() {
  wire::EventRecord ev;
  uint64_t n = 0;
  PoppedTally tally;
  for (; g_shim.ring.Pop(&ev); ++n) tally.Add(ev);
  if (n) {
    g_shim.counters.dropped_events.fetch_add(n, std::memory_order_relaxed);
    g_state->ring_complete = false;
  }
}

bool Connect(State* s) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, g_shim.config.socket_path, sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    g_connect_retryable.store(errno == EAGAIN || errno == EINTR, std::memory_order_relaxed);
    close(fd);
    return false;
  }
  g_connect_retryable.store(false, std::memory_order_relaxed);
  if (!s->sock.Adopt(fd)) return false;
  s->out.Clear();
  s->batch_len = 0;
  s->sent.Clear();

  char exe_buf[wire::kMaxPathBytes];
  size_t exe_len = strlen(s->exe);
  memcpy(exe_buf, s->exe, exe_len);
  wire::Hello hello{};
  hello.magic = wire::kMagic;
  hello.version = wire::kVersion;
  hello.exe_len = static_cast<uint16_t>(exe_len);
  hello.pid = static_cast<uint32_t>(getpid());
  hello.ppid = static_cast<uint32_t>(getppid());
  hello.sample_bytes = g_shim.config.sample_bytes;
  hello.start_time_ns = g_shim.start_time_ns;
  hello.max_frames = g_shim.config.max_frames;
  s->out.Append(wire::FrameType::kHello, &hello, sizeof(hello), exe_buf, exe_len);
  if (s->ever_connected) g_shim.counters.reconnects.fetch_add(1, std::memory_order_relaxed);
  bool lost = g_shim.resync_needed.exchange(false, std::memory_order_acq_rel);
  bool replay = !s->ever_connected && s->ring_complete && !lost;
  s->ever_connected = true;
  s->ring_complete = false;  // from now on this connection owns what it popped
  g_connected.store(true, std::memory_order_release);
  return SendModules(s) && (replay || Resync(s)) && SendStats(s) && Flush(s);
}

// Ends the sender's sleep in Idle now (or makes its next one return at once).
void WakeSender() {
  g_wake.fetch_add(1, std::memory_order_acq_rel);
  syscall(SYS_futex, &g_wake, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// Sleeps until the idle period ends or something wakes the sender (an
// exiting process, a ring filling up); then notices a collector that hung
// up, and reads and ignores anything it sent.
void Idle(State* s, uint64_t wait_ms) {
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
  ssize_t n = recv(s->sock.fd(), sink, sizeof(sink), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) Disconnect(s);
}

void RunOnce(State* s) {
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
    DiscardRing();  // nobody to tell; the next connection resyncs anyway
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
    g_shim.ring.Prefault(kPrefaultMaxBytes);
  }
  s->sleep_ms = SenderSleepMs(s->sleep_ms, drained, round_ns - s->last_round_ns, g_shim.ring.capacity());
  s->last_round_ns = round_ns;
  if (s->sleep_ms > 0) Idle(s, s->sleep_ms);
}

void* SenderMain(void*) {
  t_thread.guard = 1;  // for life: nothing this thread does is sampled
  DisableSampler(&t_thread.sampler);
  prctl(PR_SET_NAME, "heapwatch", 0, 0, 0);
  State* s = g_state;
  ssize_t n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
  s->exe[n > 0 ? n : 0] = '\0';
  while (!g_pause_requested.load(std::memory_order_acquire)) RunOnce(s);
  return nullptr;
}

}  // namespace

bool StartSender() {
  if (!g_state) {
    void* mem = MapZeroed(sizeof(State));
    if (!mem) return false;
    State* s = new (mem) State();
    s->out_mem = static_cast<uint8_t*>(MapZeroed(kOutBytes));
    s->module_mem = static_cast<uint8_t*>(MapZeroed(kModuleBytes));
    s->batch = static_cast<wire::EventRecord*>(MapZeroed(kBatchEvents * sizeof(wire::EventRecord)));
    if (!s->out_mem || !s->module_mem || !s->batch || !s->sent.Init(kSentSlots)) return false;
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
      static_cast<uint32_t>(getpid()) != g_shim.pid) {
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
  if (static_cast<uint32_t>(getpid()) != g_shim.pid) return;  // the sender is another process's
  uint64_t deadline = MonoMs() + static_cast<uint64_t>(timeout_ms);
  // A request also makes the sender connect at once (no backoff) if it is
  // not connected. Each connected round that delivers everything records in
  // done the request count it read when it began, so done >= ticket means a
  // whole round (drain, stats, flush) began after this request and
  // succeeded: what the process pushed before now is in the socket.
  uint64_t ticket = g_flush_requested.fetch_add(1, std::memory_order_acq_rel) + 1;
  WakeSender();
  NoCancellation no_cancellation;  // poll() below
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
    poll(nullptr, 0, 1);
  }
}

bool SenderHoldsLoader() { return g_loader_busy.load(std::memory_order_acquire); }

void SenderCopyOff() {
  g_thread.store(static_cast<int>(Thread::kNone), std::memory_order_relaxed);
  g_connected.store(false, std::memory_order_relaxed);
  UnlockLoader();
  if (g_state) g_state->sock.Close();
}

void SenderForkPrepare() { LockLoader(); }
void SenderForkParent() { UnlockLoader(); }

void SenderForkChild() {
  UnlockLoader();
  g_thread.store(static_cast<int>(Thread::kNone), std::memory_order_relaxed);
  g_connected.store(false, std::memory_order_relaxed);
  g_tried_connect.store(false, std::memory_order_relaxed);
  g_connect_retryable.store(false, std::memory_order_relaxed);
  g_flush_requested.store(0, std::memory_order_relaxed);
  g_flush_done.store(0, std::memory_order_relaxed);
  g_sleeping.store(false, std::memory_order_relaxed);  // the parent's sender slept, not ours
  if (g_state) {
    State* s = g_state;
    s->sock.Close();  // the parent's connection, not ours
    s->out.Clear();
    s->batch_len = 0;
    s->ever_connected = false;
    s->ring_complete = false;  // the table is the parent's copy: resync
    s->resync_generation = 0;
    s->next_connect_ms = 0;
    s->backoff_ms = kBackoffMinMs;
    s->next_stats_ns = 0;
  }
  // The child's own sender starts at its first sample (recorder.cc).
}

}  // namespace heapwatch::preload
