#include "unwinder.h"

#include <alloca.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include <heapwatch/wire.h>

#include "clock.h"
#include "libc_functions.h"
#include "libunwind_loader.h"
#include "raw_memory.h"
#include "side_stack.h"
#include "unwinder_internal.h"

extern "C" const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

namespace heapwatch::preload {

namespace {

bool g_frame_pointers = false;
uintptr_t g_skip_start = 0, g_skip_end = 0;

// Which of libunwind's two ways a thread unwinds with (see unwinder.h): it
// steps, and every kStepsPerTry samples tries to take a trace cache.
constexpr uint32_t kStepsPerTry = 16;
struct UnwindState {
  bool trace_cache;
  bool retired;  // had a trace cache, retired (RetireTraceCaches)
  bool exiting;
  uint32_t cache_generation;  // g_cache_generation when this thread took its cache
  uint32_t steps;
  bool in_libunwind;  // between EnterLibunwind and LeaveLibunwind
  uint32_t stamp;     // this thread's entries into libunwind (never 0 once entered)
  uint32_t slot;      // this thread's UnwindSlot + 1; 0 none yet; kNoSlot none free
  // This thread's stack (the frame pointer walk's bounds, and where
  // libunwind may run), [0, 0) until known, and kNoStack if it cannot be
  // found.
  uintptr_t stack_lo, stack_hi;
  uint32_t in_getattr;  // calls of pthread_getattr_np under way (EnterThreadAttributes)
};
constexpr uintptr_t kNoStack = 1;
__thread UnwindState t_unwind __attribute__((tls_model("initial-exec")));

// Forks and libunwind (unwinder.h, UnwinderForkPrepare). Each thread that
// unwinds with libunwind owns a slot whose `busy` it sets for the length of
// the unwind (to its stamp: which entry this is); a thread that finds none
// free uses g_shared_busy. A slot is a cache line of its own: setting it
// costs a thread one fenced store to a line no other thread writes.
constexpr uint32_t kUnwindSlots = 256;
constexpr uint32_t kNoSlot = UINT32_MAX;
struct alignas(64) UnwindSlot {
  std::atomic<uint32_t> owned{0};
  std::atomic<uint32_t> busy{0};
};
UnwindSlot g_slots[kUnwindSlots] HEAPWATCH_LARGE_ZEROED;  // raw_memory.h
// How many slots have ever been claimed (the lowest free one is, so they are
// g_slots[0 .. g_slots_used)): a fork reads those and not all 256 lines, ~3%
// of a fork and _exit's CPU in a process that samples (perf).
std::atomic<uint32_t> g_slots_used{0};
std::atomic<uint32_t> g_shared_busy{0};
// Written by the prepare handler alone (glibc runs them under its atfork
// lock): the marks forks gave up on, and whether the coming child is born
// with one up.
uint32_t g_stale_busy[kUnwindSlots] HEAPWATCH_LARGE_ZEROED;
uint32_t g_stale_shared = 0;
bool g_child_without_libunwind = false;

uint32_t g_cache_limit = 0;
std::atomic<uint32_t> g_caches_in_use{0};
// Moved by RetireTraceCaches: a cache taken under an older generation is not
// used any more.
std::atomic<uint32_t> g_cache_generation{0};
std::atomic<uint32_t> g_caches_retired{0};
// Set for a thread that holds a trace cache, a slot or a side stack; its
// destructor gives them back when the thread exits (libunwind frees the cache
// itself from a destructor of its own).
pthread_key_t g_thread_key;
bool g_have_thread_key = false;

// Makes ReleaseThread run at this thread's exit; false if it cannot.
bool ReleaseAtExit() {
  return g_libc.pthread_getspecific(g_thread_key) != nullptr ||
         g_libc.pthread_setspecific(g_thread_key, &g_caches_in_use) == 0;
}

void LeaveLibunwind();

// Takes down what this thread holds up for others while it captures: its
// mark inside libunwind, and the shared stack.
void LeaveCapture() {
  if (t_unwind.in_libunwind) LeaveLibunwind();
  LeaveSharedStack();
}

void ReleaseThread(void*) {
  UnwindState& t = t_unwind;
  // Exiting from a signal handler that interrupted a capture (pthread_exit,
  // or a cancellation): the capture ends here.
  LeaveCapture();
  // Anything this exiting thread still samples steps (libunwind may already
  // have freed the cache) and goes without a slot.
  if (t.trace_cache || t.retired) g_caches_in_use.fetch_sub(1, std::memory_order_relaxed);
  t.trace_cache = false;
  t.retired = false;
  t.exiting = true;
  if (t.slot != 0 && t.slot != kNoSlot) g_slots[t.slot - 1].owned.store(0, std::memory_order_release);
  t.slot = kNoSlot;
  ReleaseSideStack();
}

uint32_t ClaimSlot() {
  if (!g_have_thread_key || t_unwind.exiting) return kNoSlot;
  for (uint32_t i = 0; i < kUnwindSlots; ++i) {
    uint32_t free_slot = 0;
    if (g_slots[i].owned.load(std::memory_order_relaxed) == 0 &&
        g_slots[i].owned.compare_exchange_strong(free_slot, 1, std::memory_order_acquire)) {
      // Counted before the slot's first mark, which EnterLibunwind fences
      // against a fork's read of g_forking: a fork that misses the count
      // is one the mark's owner sees and steps back from.
      uint32_t used = g_slots_used.load(std::memory_order_relaxed);
      while (used < i + 1 && !g_slots_used.compare_exchange_weak(used, i + 1, std::memory_order_relaxed)) {
      }
      if (ReleaseAtExit()) return i + 1;
      g_slots[i].owned.store(0, std::memory_order_release);
      return kNoSlot;
    }
  }
  return kNoSlot;
}

void LeaveLibunwind() {
  UnwindState& t = t_unwind;
  t.in_libunwind = false;
  if (t.slot != kNoSlot) {
    g_slots[t.slot - 1].busy.store(0, std::memory_order_release);
  } else {
    g_shared_busy.fetch_sub(1, std::memory_order_release);
  }
}

// Marks this thread as inside libunwind; false (and nothing marked) while a
// fork is being prepared. A Dekker pair with UnwinderForkPrepare: each
// stores its flag, fences, then reads the other's.
bool EnterLibunwind() {
  UnwindState& t = t_unwind;
  if (t.slot == 0) t.slot = ClaimSlot();
  if (t.slot != kNoSlot) {
    if (++t.stamp == 0) t.stamp = 1;
    g_slots[t.slot - 1].busy.store(t.stamp, std::memory_order_relaxed);
  } else {
    g_shared_busy.fetch_add(1, std::memory_order_relaxed);
  }
  t.in_libunwind = true;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!g_fork_words->forking.load(std::memory_order_relaxed)) return true;
  LeaveLibunwind();
  return false;
}

bool TakeCache() {
  if (!g_have_thread_key) return false;
  uint32_t n = g_caches_in_use.load(std::memory_order_relaxed);
  do {
    if (n >= g_cache_limit) return false;
  } while (!g_caches_in_use.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  if (!ReleaseAtExit()) {
    g_caches_in_use.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  // Read before the cache exists (libunwind makes it at this thread's next
  // unw_backtrace): a retirement in between retires it too, needlessly but
  // safely.
  t_unwind.cache_generation = g_cache_generation.load(std::memory_order_acquire);
  return true;
}

// unw_step from here outwards: no trace cache, and ~300x the time of
// unw_backtrace (libunwind masks signals around its lookups, two syscalls a
// frame). The first pc is in this function, which the caller skips.
uint32_t StepBacktrace(void** out, uint32_t max) {
  unw_context_t context;
  unw_cursor_t cursor;
  if (g_lu.getcontext(&context) != 0 || g_lu.init_local(&cursor, &context) != 0) return 0;
  uint32_t n = 0;
  do {
    unw_word_t ip = 0;
    if (g_lu.get_reg(&cursor, UNW_REG_IP, &ip) != 0 || ip == 0) break;
    out[n++] = reinterpret_cast<void*>(ip);
  } while (n < max && g_lu.step(&cursor) > 0);
  return n;
}

// libunwind sets itself up (its tables, and the pipe it checks addresses
// with: descriptors.h) at the process's first unwind, not at the shim's
// start: most short processes never sample (a shell script's commands), and
// the set-up was ~40,000 instructions and a dozen page faults of every exec
// under the shim (BENCHMARKS.md, "Processes that never sample"). Its
// caching policy must be set before anything unwinds (per thread: the
// global one masks signals around every lookup), so the first thread sets
// it up inside its mark (EnterLibunwind) and another that comes meanwhile
// waits for it, as a fork waits for a mark: a second at most, then that
// sample has no stack.

enum : uint32_t { kNotSetUp, kSettingUp, kSetUp };
std::atomic<uint32_t> g_set_up{kNotSetUp};

bool SetUpLibunwind() {
  uint32_t state = g_set_up.load(std::memory_order_acquire);
  if (__builtin_expect(state == kSetUp, 1)) return true;
  if (state == kNotSetUp && g_set_up.compare_exchange_strong(state, kSettingUp, std::memory_order_acq_rel)) {
    g_lu.set_caching_policy(*g_lu.local_addr_space, UNW_CACHE_PER_THREAD);
    g_set_up.store(kSetUp, std::memory_order_release);
    WakeWaiters(g_set_up);
    return true;
  }
  uint64_t deadline = 0;
  return SleepUntil(g_set_up, [](uint32_t set_up) { return set_up == kSetUp; }, &deadline, kForkWaitNs);
}

// Inlined into CaptureStack, so that the trace has one frame fewer to walk
// (each of the shim's own frames is ~80 of libunwind's instructions a
// sample); RunAside calls a copy of its own.
__attribute__((always_inline)) inline uint32_t LibunwindBacktrace(void** out, uint32_t max) {
  UnwindState& t = t_unwind;
  if (t.trace_cache) {
    if (__builtin_expect(t.cache_generation != g_cache_generation.load(std::memory_order_acquire), 0)) {
      t.trace_cache = false;
      t.retired = true;
      g_caches_retired.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (!t.retired && !t.exiting && ++t.steps % kStepsPerTry == 0) {
    t.trace_cache = TakeCache();
  }
  if (!EnterLibunwind()) return 0;  // a fork is being prepared
  uint32_t n = 0;
  if (!SetUpLibunwind()) {
    LeaveLibunwind();
    return 0;
  }
  if (t.trace_cache) {
    int got = g_lu.backtrace(out, static_cast<int>(max));
    n = got > 0 ? static_cast<uint32_t>(got) : 0;
  } else {
    n = StepBacktrace(out, max);
  }
  LeaveLibunwind();
  return n;
}

// Slack for the shim's own frames on top of the requested depth.
constexpr uint32_t kSkipSlack = 16;

// fn(out, max) on this thread's side stack, which the thread key's
// destructor unmaps when the thread exits; 0 where that cannot be arranged.
uint32_t RunAside(StackFunction fn, void** out, uint32_t max) {
  if (!g_have_thread_key || t_unwind.exiting || !ReleaseAtExit()) return 0;
  return RunOnSideStack(fn, out, max);
}

// Finds this thread's stack from its pthread attributes; returns 1. The
// caller holds the guard: for the main thread glibc reads /proc/self/maps
// (fopen, sscanf), for others it reallocs.
uint32_t FindStack(void**, uint32_t) {
  UnwindState& t = t_unwind;
  t.stack_lo = t.stack_hi = kNoStack;
  // glibc's pthread_getattr_np, not the shim's (getattr_interposer.cc).
  const LibcFunctions& libc = Libc();
  pthread_attr_t attr;
  if (libc.pthread_getattr_np && libc.pthread_getattr_np(libc.pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    size_t size = 0;
    if (libc.pthread_attr_getstack(&attr, &addr, &size) == 0 && size > 0) {
      t.stack_lo = reinterpret_cast<uintptr_t>(addr);
      t.stack_hi = t.stack_lo + size;
    }
    libc.pthread_attr_destroy(&attr);
  }
  return 1;
}

// This thread's stack, if known.
bool StackBounds(uintptr_t* lo, uintptr_t* hi) {
  const UnwindState& t = t_unwind;
  *lo = t.stack_lo;
  *hi = t.stack_hi;
  return t.stack_hi != 0 && t.stack_hi != kNoStack;
}

// Room libunwind may take below its caller on the thread's own stack; the
// most seen was ~8 KiB (side_stack.h).
constexpr uintptr_t kUnwindRoom = 32 * 1024;

// Whether libunwind may run where this frame is: on this thread's own stack,
// with kUnwindRoom left below. Not on a coroutine's or an alternate signal
// stack, whose size is unknown here.
bool RoomToUnwind() {
  uintptr_t lo, hi;
  auto sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  return StackBounds(&lo, &hi) && sp >= lo + kUnwindRoom && sp < hi;
}

// At a thread's first capture. pthread_getattr_np can take ~4 KiB of stack
// (the main thread's sscanf; in another thread, the first realloc from libc
// in the process binds libc's PLT entry, and ld.so saves the vector
// registers on the stack), which the first sample of a coroutine or of a
// thread with a small stack may not have. So it runs on the shared stack or,
// while another thread has that, on the thread's side stack, which goes
// again if the thread's stack turns out to have room. Without either the
// thread's stack stays unknown (its samples get no stack) until a later
// capture finds one.
void LearnStack() {
  if (t_unwind.in_getattr) return;  // inside pthread_getattr_np: its lock is held
  if (RunOnSharedStack(FindStack, nullptr, 0) == 1) return;
  if (RunAside(FindStack, nullptr, 0) == 1 && RoomToUnwind()) DropSideStack();
}

// Each frame: [fp] = caller's fp, [fp+8] = return address. Every frame read
// lies on this thread's stack, above the last one and 8-aligned; the walk
// ends at the first that does not (code without frame pointers leaves any
// value in rbp). -1 where the walk cannot start: no known stack, or this
// frame is not on it (a signal handler on an alternate stack); the caller
// then unwinds with libunwind.
int WalkFramePointers(void** out, uint32_t max) {
  uintptr_t lo, hi;
  if (!StackBounds(&lo, &hi)) return -1;
  auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (fp < lo || fp > hi - 16) return -1;
  uint32_t n = 0;
  while (n < max) {
    const auto* frame = reinterpret_cast<const uintptr_t*>(fp);
    uintptr_t ret = frame[1];
    if (ret < 4096) break;
    out[n++] = reinterpret_cast<void*>(ret);
    uintptr_t next = frame[0];
    if (next <= fp || next > hi - 16 || (next & 7) != 0) break;
    fp = next;
  }
  return static_cast<int>(n);
}

}  // namespace

void SelfCodeRange(uintptr_t* start, uintptr_t* end) {
  const ElfW(Ehdr)* eh = &__ehdr_start;
  const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(reinterpret_cast<const char*>(eh) + eh->e_phoff);
  uintptr_t base = reinterpret_cast<uintptr_t>(eh);
  uintptr_t first_vaddr = UINTPTR_MAX;
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr < first_vaddr) first_vaddr = ph[i].p_vaddr;
  }
  *start = *end = 0;
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
    uintptr_t lo = base - first_vaddr + ph[i].p_vaddr;
    uintptr_t hi = lo + ph[i].p_memsz;
    if (*start == 0 || lo < *start) *start = lo;
    if (hi > *end) *end = hi;
  }
}

void InitUnwinder(bool frame_pointers, uintptr_t skip_start, uintptr_t skip_end,
                  uint32_t trace_caches) {
  g_frame_pointers = frame_pointers;
  g_skip_start = skip_start;
  g_skip_end = skip_end;
  // Also without libunwind: it unmaps side stacks (side_stack.h).
  const auto key_create = Libc().pthread_key_create;
  g_have_thread_key = key_create && key_create(&g_thread_key, ReleaseThread) == 0;
  g_cache_limit = trace_caches;
}

bool InsideLibunwind() { return t_unwind.in_libunwind; }
void SetInsideLibunwind(bool inside) { t_unwind.in_libunwind = inside; }

void EnterThreadAttributes() { ++t_unwind.in_getattr; }
void LeaveThreadAttributes() { --t_unwind.in_getattr; }

uint32_t TraceCachesInUse() { return g_caches_in_use.load(std::memory_order_relaxed); }

bool TraceCachesEnabled() { return g_have_thread_key && g_cache_limit > 0; }

void ForgetUnmappedCode() {
  // Before the set-up nothing has unwound, and the set-up starts with an
  // empty cache.
  if (g_libunwind.load(std::memory_order_acquire) == kLoaded &&
      g_set_up.load(std::memory_order_acquire) == kSetUp) {
    g_lu.flush_cache(*g_lu.local_addr_space, 0, 0);
  }
}

void RetireTraceCaches() { g_cache_generation.fetch_add(1, std::memory_order_acq_rel); }

uint32_t TraceCachesRetired() { return g_caches_retired.load(std::memory_order_relaxed); }

namespace {

// Waits until `mark` is at most `own` (this thread's part of it), or is the
// value a fork gave up on before (*stale), or the wait that `*deadline`
// bounds (0: not started) has lasted kForkWaitNs: then gives up on it (into
// *stale). Returns the mark as last read.
uint32_t WaitForMark(const std::atomic<uint32_t>& mark, uint32_t own, uint32_t* stale,
                     uint64_t* deadline) {
  uint32_t m;
  auto done = [&] {
    m = mark.load(std::memory_order_acquire);
    return m <= own || m == *stale;
  };
  if (!YieldUntil(done, deadline)) *stale = m;
  return m;
}

// Whether another thread's mark is up once each has been waited for, as
// WaitForMark does with `deadline` (0: up to kForkWaitNs; one already past:
// no wait, each read once). Not this thread's own mark: a fork from a signal
// handler that interrupted an unwind of this thread (libunwind blocks
// signals while it holds its lock, so that one is free).
bool OtherMarksUp(uint64_t deadline) {
  const UnwindState& t = t_unwind;
  const uint32_t own_slot = t.in_libunwind ? t.slot : 0;
  bool marks_up = false;
  const uint32_t used = g_slots_used.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < used; ++i) {
    if (own_slot == i + 1) continue;
    marks_up |= WaitForMark(g_slots[i].busy, 0, &g_stale_busy[i], &deadline) != 0;
  }
  const uint32_t own_shared = t.in_libunwind && t.slot == kNoSlot ? 1 : 0;
  marks_up |= WaitForMark(g_shared_busy, own_shared, &g_stale_shared, &deadline) > own_shared;
  return marks_up;
}

}  // namespace

void UnwinderForkPrepare() {
  g_fork_words->forking.store(true, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool without = OtherMarksUp(0);  // both wait: for unwinds, then for a load
  if (LoadUnderWay(0)) without = true;
  // Written only if it changes: the child reads it, so it is not among the
  // fork words, and a write to its page at every fork was a copy-on-write
  // fault of every fork after the first (fork_words.h).
  if (g_child_without_libunwind != without) g_child_without_libunwind = without;
}

bool UnwinderForkParent() {
  g_fork_words->forking.store(false, std::memory_order_release);
  return g_child_without_libunwind;
}

// The threads whose marks these are are not in the copy: nothing to wait for.
void UnwinderCopyMade() { g_child_without_libunwind = OtherMarksUp(1) || LoadUnderWay(1); }

HEAPWATCH_FORK_CHILD_CODE bool UnwinderForkChild() {
  // The child's only thread is the one that forked.
  const UnwindState& t = t_unwind;
  const bool without_libunwind = LoadForkChild(g_child_without_libunwind);
  g_caches_in_use.store(t.trace_cache || t.retired ? 1 : 0, std::memory_order_relaxed);
  // Its own mark stays if it forked from a signal handler inside an unwind.
  // Each written only if it changes: the slots are 16 KiB the child shares
  // with its parent, and a write is a copy-on-write fault (~10 us a page
  // here) that a child which execs at once pays for nothing.
  auto set = [](std::atomic<uint32_t>& a, uint32_t v) {
    if (a.load(std::memory_order_relaxed) != v) a.store(v, std::memory_order_relaxed);
  };
  const uint32_t used = g_slots_used.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < used; ++i) {
    const bool own = t.slot == i + 1;
    set(g_slots[i].owned, own ? 1 : 0);
    set(g_slots[i].busy, own && t.in_libunwind ? t.stamp : 0);
    if (g_stale_busy[i] != 0) g_stale_busy[i] = 0;
  }
  g_shared_busy.store(t.in_libunwind && t.slot == kNoSlot ? 1 : 0, std::memory_order_relaxed);
  g_stale_shared = 0;
  SideStackForkChild();
  if (!ForkWordsWiped()) g_fork_words->forking.store(false, std::memory_order_relaxed);
  return without_libunwind;
}

bool OnOwnStack(uintptr_t address) {
  uintptr_t lo, hi;
  return StackBounds(&lo, &hi) && address >= lo && address < hi;
}

void UnwinderAbandoned() {
  UnwindState& t = t_unwind;
  if (t.in_libunwind) {
    // Left inside unw_backtrace, the trace cache may be half written (a
    // new entry, or a resize that had unmapped the old table): this thread
    // steps from now on, as after RetireTraceCaches.
    if (t.trace_cache) {
      t.trace_cache = false;
      t.retired = true;
      g_caches_retired.fetch_add(1, std::memory_order_relaxed);
    }
  }
  LeaveCapture();
}

uint32_t CaptureStack(uint64_t* pcs, uint32_t max) {
  if (max > wire::kMaxFrames) max = wire::kMaxFrames;
  uint32_t want = max + kSkipSlack;
  // Sized for `max`, not for kMaxFrames: a sample's stack use is the host's
  // (unwinder.h), and at the default 64 frames this is 640 bytes, not 2 KiB.
  void** raw = static_cast<void**>(alloca(want * sizeof(void*)));
  if (t_unwind.stack_hi == 0) LearnStack();
  int walked = g_frame_pointers ? WalkFramePointers(raw, want) : -1;
  uint32_t n = 0;
  if (walked >= 0) {
    n = static_cast<uint32_t>(walked);
  } else if (LibunwindReady()) {
    n = RoomToUnwind() ? LibunwindBacktrace(raw, want) : RunAside(LibunwindBacktrace, raw, want);
  } else if (!g_frame_pointers) {
    // libunwind is not loaded yet, and cannot be waited for (LibunwindReady):
    // the allocation's call site alone, found through the shim's own frame
    // pointers (it keeps them); the application's frames need not have any.
    walked = WalkFramePointers(raw, want);
    n = walked > 0 ? static_cast<uint32_t>(walked) : 0;
    max = 1;
  }
  if (n == 0) return 0;
  uint32_t first = 0;
  while (first < n) {
    auto pc = reinterpret_cast<uintptr_t>(raw[first]);
    if (pc < g_skip_start || pc >= g_skip_end) break;
    ++first;
  }
  uint32_t depth = 0;
  for (uint32_t i = first; i < n && depth < max; ++i) pcs[depth++] = reinterpret_cast<uintptr_t>(raw[i]);
  return depth;
}

}  // namespace heapwatch::preload
