#include "recorder_fork.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <new>

#include "fork_words.h"
#include "loader_lock.h"
#include "raw_memory.h"
#include "raw_syscall.h"
#include "recorder.h"
#include "recorder_tables.h"
#include "sender.h"
#include "unloaded_code.h"
#include "unwinder.h"

namespace heapwatch::preload {

namespace {
constinit std::atomic<uint64_t> g_static_token{kCopyToken};
}  // namespace
std::atomic<uint64_t>* g_copy_token = &g_static_token;
namespace {
ForkWords g_static_fork_words;
}  // namespace
ForkWords* g_fork_words = &g_static_fork_words;
HEAPWATCH_FORK_CHILD_CODE bool ForkWordsWiped() { return g_fork_words != &g_static_fork_words; }

void ArmCopyToken() {
  void* page = MapZeroed(kPageBytes);
  if (!page) return;
  if (!WipeOnFork(page, kPageBytes)) return Unmap(page, kPageBytes);
  auto* token = static_cast<std::atomic<uint64_t>*>(page);
  token->store(kCopyToken, std::memory_order_relaxed);
  g_copy_token = token;
  // At start, before any other thread of the shim's, and before any fork
  // handler of its could run: nothing uses the static words yet.
  g_fork_words = new (static_cast<char*>(page) + 64) ForkWords();
}

// The threads of this process: /proc/self/task's entries, read with
// getdents64 into a buffer on the stack (inside malloc: no opendir). -1 if
// they cannot be read.
int CountThreads() {
  int fd = static_cast<int>(sys::Open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
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
  sys::Close(fd);
  return threads;
}

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
                    : LoaderLockHeldByGhost() ? "the copy was made while another thread held the loader's lock"
                                                : nullptr;
  if (why) {
    g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
    SenderForkChild();  // forgets the parent's sender and its connection
    Say("a process copied without fork()'s handlers (_Fork, clone) is not profiled: ", why);
    return false;
  }
  UnwinderCopyMade();
  ForkChild();
  return on();
}

void ForkPrepare() {
  if (IsUnadoptedCopy()) AdoptCopy();
  // A child forked while another thread maps the tables would find them
  // half made, and nobody to finish (ForkChild).
  WaitForTables(g_shim.tables.load(std::memory_order_acquire));
  UnwinderForkPrepare();
}
// Whether a child has said it does not use libunwind (ForkChild); the next
// children, born with it set, say nothing.
namespace {
bool g_children_told = false;
}  // namespace

void ForkParent() {
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

HEAPWATCH_FORK_CHILD_CODE void ForkChild() {
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
  g_shim.table.ForkChild();
  Counters& c = g_shim.counters;
  for (auto* a : {&c.sampled_allocs, &c.sampled_frees, &c.dropped_events, &c.table_full,
                  &c.unwind_failures, &c.reconnects, &c.bytes_sent}) {
    a->store(0, std::memory_order_relaxed);
  }
  g_shim.resync_needed.store(true, std::memory_order_relaxed);
  SenderForkChild();
  g_shim.sender_started.store(false, std::memory_order_relaxed);  // at the first sample
  g_shim.unwinder_loader_started.store(false, std::memory_order_relaxed);
}

}  // namespace heapwatch::preload
