// The recording path and the shim's process-wide state.
//
// Everything here must work inside malloc: no heap, no locks, no logging, no
// exceptions. Globals are constant-initialised PODs (or atomics) in static
// storage with trivial destructors, so allocations during exit never see torn
// down state.
//
// Who calls what: the interposer (interposer.cc, cxx_interposer.cc) asks the
// thread's sampler, calls RecordAlloc for sampled allocations after the real
// allocator returned, and RecordFree for pointers the live table may hold,
// before the real free (see RecordFree). The sender thread (sender.cc) drains
// the ring and scans the table.
#ifndef HEAPWATCH_PRELOAD_RECORDER_H_
#define HEAPWATCH_PRELOAD_RECORDER_H_

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "clock.h"
#include "config.h"
#include "event_ring.h"
#include "live_table.h"
#include "raw_syscall.h"
#include "sampler.h"
#include "stack_depot.h"

namespace heapwatch::preload {

// Per-thread state in initial-exec TLS: zero-initialised, no constructor or
// destructor (thread exit runs no shim code).
struct ThreadState {
  SamplerState sampler;
  uint32_t guard;  // > 0 while this thread is inside the shim's own work
  uint32_t tid;    // cached gettid(); 0 = unknown
  // RecordAlloc's frame address while it runs, else 0, and the
  // cancellation state it restores (recorder.cc, SampleScope, AbandonSample).
  uintptr_t sample_frame;
  int sample_cancel_state;
  bool sender_heap;  // libunwind's loader thread: its mallocs come from SenderHeapAlloc
};
extern __thread ThreadState t_thread __attribute__((tls_model("initial-exec")));

// Marks the thread as inside the shim's own work while in scope: its
// allocations pass through unsampled (dlopen's, SayOnce's setenv's).
struct GuardScope {
  GuardScope() { ++t_thread.guard; }
  ~GuardScope() { --t_thread.guard; }
};

struct Counters {
  std::atomic<uint64_t> sampled_allocs{0};
  std::atomic<uint64_t> sampled_frees{0};
  std::atomic<uint64_t> dropped_events{0};
  std::atomic<uint64_t> table_full{0};
  std::atomic<uint64_t> unwind_failures{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> bytes_sent{0};
};

enum class ShimState : int {
  kStarting = 0,  // before the constructor: allocations pass through unsampled
  kOn = 1,
  kOff = 2,       // disabled, failed or another allocator came first: pass-through
};

struct Shim {
  Config config;
  LiveTable table;
  StackDepot depot;
  EventRing ring;
  Counters counters;
  std::atomic<int> state{static_cast<int>(ShimState::kStarting)};
  // Set when an event was dropped (and by fork): the sender must re-send the
  // whole table. Not set at start: a first connection replays the ring.
  std::atomic<bool> resync_needed{false};
  uint32_t pid = 0;
  uint64_t start_time_ns = 0;  // CLOCK_REALTIME at start (or fork) of this process
  // Whether this process's first sample has started its sender (RecordAlloc).
  std::atomic<bool> sender_started{false};
  // Whether a thread to load libunwind was started (recorder.cc,
  // LoadUnwinderAtSample).
  std::atomic<bool> unwinder_loader_started{false};
  // The table, depot and ring, mapped at the first sample (MapTables):
  // kTablesNone, kTablesMapping, kTablesMapped or kTablesFailed.
  std::atomic<int> tables{0};
};
inline constexpr int kTablesNone = 0, kTablesMapping = 1, kTablesMapped = 2, kTablesFailed = 3;
extern Shim g_shim __attribute__((visibility("hidden")));  // hidden: direct access from free()

// Whether this is the process g_shim describes: not a vfork child (which
// shares its memory) nor a copy made without fork()'s handlers that nothing
// has adopted yet. One system call.
inline bool InShimsProcess() { return static_cast<uint32_t>(sys::Getpid()) == g_shim.pid; }

// Sets up tables and the sender from the environment. Called once from the
// shim's constructor; `other_allocator_first` makes it a pass-through.
void StartRecorder(bool other_allocator_first);

// Loads libunwind (unwinder.h, LoadUnwinder): at a sample (recorder.cc,
// LoadUnwinderAtSample), the constructor where glibc is older than 2.34. If
// it cannot be loaded, says why and, without HEAPWATCH_UNWIND=fp, turns the
// shim off (`at_start`: once for the programs it execs too, SayOnce). False
// if the shim is then off.
bool LoadUnwinderNow(bool at_start);
// Before a call that may take libunwind's files out of reach (chroot, a
// mount namespace: namespace_interposer.cc): loads it now, from the
// application's thread, if the shim is on and it is not loaded yet; and
// keeps /proc/self/maps open for the sender's module maps (modules.h).
void LoadUnwinderBeforeLeavingFiles();

// Writes "heapwatch: <what><detail>" and a newline to stderr, once for a
// process and the programs it execs: `key` goes into the environment's
// HEAPWATCH_SAID, and a process that finds the same key there says nothing.
// In a container every process would say it (each command of an Alpine
// image's shell script), into output that scripts capture with 2>&1.
// At start only (setenv).
void SayOnce(const char* key, const char* what, const char* detail = "");
// The same line every time, without the environment (any time, any thread).
void Say(const char* what, const char* detail = "");

// The slow half of the sampling decision (fast half: Unsampled, below).
// False inside the shim's own work, before start and when off. Callers call
// it and RecordAlloc from one function (so at one depth): a sample that a
// signal handler's jump left without running its cleanup (recorder.cc,
// SampleScope) is then taken down at the thread's next sampling decision
// from that depth or above (RecoverAbandonedSample).
bool SampleSlowPath(size_t size);

// False for most pointers: certainly not a live sample and not a block of
// the bootstrap arena (the table pins those, see StartRecorder).
inline bool MaybeSampled(const void* p) {
  return g_shim.table.MaybeContains(reinterpret_cast<uintptr_t>(p));
}

// The fast half of the decision, inlined into every interposed call: true
// (and the bytes counted) if an allocation of `size` bytes is certainly not
// sampled; false sends the caller to its slow path, which asks
// SampleSlowPath.
inline bool Unsampled(size_t size) { return TakeUnsampled(&t_thread.sampler, size); }

// Full decision, for callers that do not take a slow path of their own.
inline bool ShouldRecord(size_t size) { return !Unsampled(size) && SampleSlowPath(size); }

// The program is about to install a seccomp filter (or strict mode) with
// `call`, before the call: the shim goes off for good (the filter may refuse
// its system calls or end the process for them), after its sender has
// delivered what was recorded. Says so once. syscall_interposer.cc.
void StopForSeccomp(const char* call);

// The malloc and calloc of libunwind's loader thread (t_thread.sender_heap;
// recorder.cc, LoadUnwinderAtSample), nullptr elsewhere: a block of the
// bootstrap arena (real_allocator.h), pinned in the live table so that
// free() from any thread knows it. glibc gives a thread's first call into
// its allocator (a free() too) an arena of its own: 64 MiB of address space
// in two mappings, for the ~8 KiB in 18 blocks that the dlopen of libunwind
// allocates, and every fork then copied them and the parent and the child
// each wrote a page of it (its lock).
// nullptr too when the arena or the pins are used up: glibc's then.
void* SenderHeapAlloc(size_t size);

// Records a sampled allocation: stack, depot, live table, ring (in that order).
void RecordAlloc(void* p, size_t size);

// If p is a live sample: removes it and pushes its free event. Must run BEFORE
// the real free: once the memory is back in the allocator another thread may
// receive the same address, and its alloc event must come after our free in
// the ring. Returns true (and the removed entry) if p was sampled.
bool RecordFree(void* p, LiveTable::Entry* removed = nullptr);

// Puts back an entry removed by RecordFree when a realloc failed and the old
// block is still live.
void RestoreLive(const LiveTable::Entry& e);

// Events' times. The collector needs an allocation's age in seconds, not
// nanoseconds, so a sample reads the time the sender noted at the start of
// its round (CLOCK_REALTIME_COARSE, at most ~0.1 s old; older only while a
// write to a slow collector blocks, up to its 2 s deadline) instead of the
// clock: even the coarse clock's vDSO read was ~2 points of CPU on the
// malloc loop (its code and data pages are misses on every sample; A/B in
// BENCHMARKS.md). Until the sender's first round, the clock itself.
struct alignas(64) EventClock {
  std::atomic<uint64_t> ns{0};
};
extern EventClock g_event_clock __attribute__((visibility("hidden")));
inline void NoteEventTime() {
  g_event_clock.ns.store(ClockNs(CLOCK_REALTIME_COARSE), std::memory_order_relaxed);
}
inline uint64_t EventTimeNs() {
  uint64_t ns = g_event_clock.ns.load(std::memory_order_relaxed);
  return ns ? ns : ClockNs(CLOCK_REALTIME_COARSE);
}
uint32_t CurrentTid();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_RECORDER_H_
