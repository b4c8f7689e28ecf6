#include "sender_connection.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "modules.h"
#include "raw_syscall.h"
#include "sender.h"
#include "text.h"

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

std::atomic<bool> g_connected{false};
std::atomic<bool> g_connect_retryable{false};

namespace {

constexpr size_t kEagerFlushBytes = 64u << 10;
// Events one DrainRing takes at most.
constexpr uint32_t kDrainEvents = 32768;
constexpr int kWriteDeadlineMs = 2000;
// How often the sender reads the process's mappings to see whether the
// module map changed (SendModulesIfChanged): every second, and after a new
// stack at most every 50 ms.
constexpr uint64_t kModulesPeriodNs = 1000000000, kModulesNewStackNs = 50000000;
constexpr uint64_t kStatsPeriodNs = 1000000000ull;

}  // namespace

void Disconnect(SenderState* s) {
  s->sock.Close();
  s->out.Clear();
  s->batch_len = 0;
  g_connected.store(false, std::memory_order_release);
  s->next_connect_ms = MonoMs() + s->backoff_ms;
}

// Sends the whole output buffer. The sender may wait here (never the
// application), up to a deadline after which the collector counts as gone.
bool Flush(SenderState* s) {
  uint64_t deadline = MonoMs() + kWriteDeadlineMs;
  if (s->out.size() > 0 && !s->sock.StillOurs()) {
    Disconnect(s);
    return false;
  }
  while (s->out.size() > 0) {
    long n = sys::Send(s->sock.fd(), s->out.data(), s->out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      g_shim.counters.bytes_sent.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      s->out.Consume(static_cast<size_t>(n));
      continue;
    }
    if (n == -EINTR) continue;
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
      uint64_t now = MonoMs();
      if (now >= deadline) break;
      // In slices of 10 ms: a thread may wait for the sender to follow its
      // credential call (sender.h).
      FollowCredentialsNow();
      pollfd p{s->sock.fd(), POLLOUT, 0};
      sys::Poll(&p, 1, static_cast<int>(deadline - now < 10 ? deadline - now : 10));
      continue;
    }
    break;
  }
  if (s->out.size() == 0) return true;
  Disconnect(s);
  return false;
}

namespace {

bool Reserve(SenderState* s, size_t payload) {
  if (FrameWriter::FrameBytes(payload) <= s->out.available()) return true;
  return Flush(s);
}

bool EmitBatch(SenderState* s) {
  if (s->batch_len == 0) return true;
  if (!Reserve(s, sizeof(wire::EventsHeader) + s->batch_len * sizeof(wire::EventRecord))) {
    return false;
  }
  s->out.AppendEvents(s->batch, s->batch_len);
  s->batch_len = 0;
  return s->out.size() < kEagerFlushBytes || Flush(s);
}

bool AddEvent(SenderState* s, const wire::EventRecord& ev) {
  if (s->batch_len == kBatchEvents && !EmitBatch(s)) return false;
  s->batch[s->batch_len++] = ev;
  return true;
}

// Makes sure the collector has the stack before an event naming it. Its kStack
// frame goes straight to the output, ahead of the pending batch. Returns false
// (event to be skipped) if the stack is unknown; *io_ok turns false on a
// connection error.
bool EnsureStack(SenderState* s, uint64_t id, bool* io_ok) {
  if (s->sent.Contains(id)) return true;
  const uint64_t* pcs = nullptr;
  uint32_t depth = 0;
  StackDepot::FindResult r = g_shim.depot.Find(id, &pcs, &depth);
  // Another thread may still be copying the pcs in; it is running (or was
  // interrupted by a signal handler that will return), so wait a little.
  for (int spins = 0; r == StackDepot::FindResult::kNotReady && spins < 2000; ++spins) {
    sys::SchedYield();
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

}  // namespace

namespace {
// What the sender knew when it last read the mappings (SendModulesIfChanged).
void NoteMappingsRead(SenderState* s, uint64_t now) {
  s->modules_stacks = g_shim.depot.stacks();
  s->modules_epoch = UnloadEpoch();
  s->next_modules_ns = now + kModulesPeriodNs;
}
}  // namespace

bool SendModules(SenderState* s) {
  FrameWriter staging(s->module_mem, kModuleBytes);
  WriteModules(&staging, &s->modules_fingerprint);
  NoteMappingsRead(s, MonoNs());
  if (!EmitBatch(s)) return false;
  if (staging.size() > s->out.available() && !Flush(s)) return false;
  return s->out.AppendRaw(staging.data(), staging.size());
}

bool SendModulesIfChanged(SenderState* s) {
  const uint64_t now = MonoNs();
  const bool epoch_moved = UnloadEpoch() != s->modules_epoch;
  const bool new_stacks = g_shim.depot.stacks() != s->modules_stacks &&
                          now + kModulesPeriodNs - kModulesNewStackNs >= s->next_modules_ns;
  if (!epoch_moved && !new_stacks && now < s->next_modules_ns) return true;
  NoteMappingsRead(s, now);
  const uint64_t fingerprint = MappingsFingerprint();
  if (fingerprint == 0 || fingerprint == s->modules_fingerprint) return true;
  return SendModules(s);
}

bool SendStats(SenderState* s) {
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

namespace {

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

}  // namespace

bool Resync(SenderState* s) {
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
uint32_t DrainRing(SenderState* s, bool* io_ok) {
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

void DiscardRing(SenderState* s) {
  wire::EventRecord ev;
  uint64_t n = 0;
  PoppedTally tally;
  for (; g_shim.ring.Pop(&ev); ++n) tally.Add(ev);
  if (n) {
    g_shim.counters.dropped_events.fetch_add(n, std::memory_order_relaxed);
    s->ring_complete = false;
  }
}

bool Connect(SenderState* s) {
  int fd = static_cast<int>(sys::Socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, g_shim.config.socket_path, sizeof(addr.sun_path) - 1);
  if (long failed = sys::Connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)); failed != 0) {
    g_connect_retryable.store(failed == -EAGAIN || failed == -EINTR, std::memory_order_relaxed);
    sys::Close(fd);
    return false;
  }
  g_connect_retryable.store(false, std::memory_order_relaxed);
  if (!s->sock.Adopt(fd)) return false;
  s->out.Clear();
  s->batch_len = 0;
  s->sent.Clear();

  char exe_buf[wire::kMaxPathBytes];
  size_t exe_len = Length(s->exe);
  memcpy(exe_buf, s->exe, exe_len);
  wire::Hello hello{};
  hello.magic = wire::kMagic;
  hello.version = wire::kVersion;
  hello.exe_len = static_cast<uint16_t>(exe_len);
  hello.pid = static_cast<uint32_t>(sys::Getpid());
  hello.ppid = static_cast<uint32_t>(sys::Getppid());
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

}  // namespace heapwatch::preload
