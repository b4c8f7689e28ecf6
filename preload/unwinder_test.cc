#include "unwinder.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include <heapwatch/wire.h>

#include "side_stack.h"

extern "C" uint32_t HeapwatchCallOnStack(void**, uint32_t, void*, heapwatch::preload::StackFunction);

namespace heapwatch::preload {
namespace {

const char* g_error = "";  // LoadUnwinder's

// Stacks from a known function, n times on the calling thread; false if any
// capture came back empty.
__attribute__((noinline)) bool Capture(int n) {
  uint64_t pcs[wire::kMaxFrames];
  bool ok = true;
  for (int i = 0; i < n; ++i) ok = ok && CaptureStack(pcs, 64) > 0;
  asm volatile("" ::: "memory");
  return ok;
}

// One binary, one process-wide configuration: a cap of one trace cache.
TEST(UnwinderTest, TraceCachesAreCappedTakenLateAndGivenBackAtThreadExit) {
  InitUnwinder(false, 0, 0, 1);
  ASSERT_TRUE(LoadUnwinder(&g_error)) << g_error;
  EXPECT_EQ(TraceCachesInUse(), 0u);

  std::atomic<int> step{0};
  std::thread first([&] {
    EXPECT_TRUE(Capture(15));
    step = 1;  // 15 samples: still stepping, no cache
    while (step != 2) std::this_thread::yield();
    EXPECT_TRUE(Capture(1));  // the 16th takes the cache
    step = 3;
    while (step != 4) std::this_thread::yield();
  });
  while (step != 1) std::this_thread::yield();
  EXPECT_EQ(TraceCachesInUse(), 0u);
  step = 2;
  while (step != 3) std::this_thread::yield();
  EXPECT_EQ(TraceCachesInUse(), 1u);

  // While the first thread holds the only cache, a second one keeps stepping
  // (and its stacks keep coming).
  std::thread second([] {
    EXPECT_TRUE(Capture(64));
    EXPECT_EQ(TraceCachesInUse(), 1u);
  });
  second.join();
  EXPECT_EQ(TraceCachesInUse(), 1u);

  step = 4;
  first.join();  // its exit gives the cache back
  EXPECT_EQ(TraceCachesInUse(), 0u);

  std::thread third([] {
    EXPECT_TRUE(Capture(16));
    EXPECT_EQ(TraceCachesInUse(), 1u);
  });
  third.join();
  EXPECT_EQ(TraceCachesInUse(), 0u);
}

// After RetireTraceCaches a thread that held a cache steps for good (its
// stacks keep coming) and still counts against the cap until it exits; a
// thread that takes its cache afterwards uses it.
TEST(UnwinderTest, RetiredCachesAreNotUsedAgainAndNewOnesAre) {
  InitUnwinder(false, 0, 0, 2);
  ASSERT_TRUE(LoadUnwinder(&g_error)) << g_error;
  ASSERT_TRUE(TraceCachesEnabled());
  const uint32_t retired = TraceCachesRetired();
  std::atomic<int> step{0};
  std::thread old_thread([&] {
    EXPECT_TRUE(Capture(16));  // takes a cache
    step = 1;
    while (step != 2) std::this_thread::yield();
    EXPECT_TRUE(Capture(1));  // finds it retired
    EXPECT_EQ(TraceCachesRetired(), retired + 1);
    EXPECT_TRUE(Capture(64));  // and never takes one again
    EXPECT_EQ(TraceCachesRetired(), retired + 1);
    step = 3;
    while (step != 4) std::this_thread::yield();
  });
  while (step != 1) std::this_thread::yield();
  EXPECT_EQ(TraceCachesInUse(), 1u);
  RetireTraceCaches();
  step = 2;
  while (step != 3) std::this_thread::yield();
  EXPECT_EQ(TraceCachesInUse(), 1u);

  std::thread new_thread([&] {
    EXPECT_TRUE(Capture(16));
    EXPECT_EQ(TraceCachesInUse(), 2u);
    EXPECT_TRUE(Capture(16));
    EXPECT_EQ(TraceCachesRetired(), retired + 1);
  });
  new_thread.join();
  step = 4;
  old_thread.join();
  EXPECT_EQ(TraceCachesInUse(), 0u);
}

// Outer -> Middle -> Inner -> CaptureStack, each keeping a frame pointer.
// Inner and Middle note their return addresses: the pcs a correct stack
// holds one after the other above CaptureStack's own frames.
struct Chain {
  uint64_t pcs[wire::kMaxFrames];
  uint32_t depth = 0;
  uintptr_t into_middle = 0, into_outer = 0, into_above = 0;
};

__attribute__((noinline)) void Inner(Chain* c) {
  c->into_middle = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  c->depth = CaptureStack(c->pcs, 64);
  asm volatile("" ::: "memory");
}

__attribute__((noinline)) void Middle(Chain* c) {
  c->into_outer = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  Inner(c);
  asm volatile("" ::: "memory");
}

__attribute__((noinline)) void Outer(Chain* c) {
  c->into_above = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  Middle(c);
  asm volatile("" ::: "memory");
}

// One call site for both unwinders, so that the frame above Outer's matches.
__attribute__((noinline)) void CaptureWith(bool frame_pointers, Chain* c) {
  InitUnwinder(frame_pointers, 0, 0, 1);
  ASSERT_TRUE(LoadUnwinder(&g_error)) << g_error;
  Outer(c);
  asm volatile("" ::: "memory");
}

// Where into_middle, into_outer stand one after the other in c's stack, or -1.
int FindCallers(const Chain& c) {
  for (uint32_t i = 0; i + 1 < c.depth; ++i) {
    if (c.pcs[i] == c.into_middle && c.pcs[i + 1] == c.into_outer) return static_cast<int>(i);
  }
  return -1;
}

// With HEAPWATCH_UNWIND=fp the walk climbs through the unwinder's own frames
// (the shim is built with frame pointers) to the caller's, and gives the
// pcs libunwind gives from there on.
TEST(UnwinderTest, FramePointerWalkGivesLibunwindsCallers) {
  Chain unwound;
  CaptureWith(false, &unwound);
  int u = FindCallers(unwound);
  ASSERT_GE(u, 0) << "libunwind's stack lacks the callers; depth " << unwound.depth;

  Chain walked;
  CaptureWith(true, &walked);
  int w = FindCallers(walked);
  ASSERT_GE(w, 0) << "the frame pointer walk lacks the callers; depth " << walked.depth;
  ASSERT_EQ(walked.into_middle, unwound.into_middle);
  // Above Outer: CaptureWith, also built with frame pointers.
  ASSERT_GT(walked.depth, static_cast<uint32_t>(w + 2));
  ASSERT_GT(unwound.depth, static_cast<uint32_t>(u + 2));
  EXPECT_EQ(walked.pcs[w + 2], unwound.pcs[u + 2]);
  // Below the callers only the unwinder's own frames: CaptureStack's and the
  // walk's, against libunwind's own several.
  EXPECT_LE(w, u);
}

Chain g_in_handler;

void CaptureInHandler(int) { Outer(&g_in_handler); }

// A handler on an alternate signal stack: the walk cannot start (its frames
// are not on the thread's stack), so libunwind takes the sample, and it
// unwinds through the signal frame into the code that raised the signal.
TEST(UnwinderTest, FramePointerWalkLeavesAnAlternateStackToLibunwind) {
  InitUnwinder(true, 0, 0, 1);
  ASSERT_TRUE(LoadUnwinder(&g_error)) << g_error;
  Chain on_stack;
  Outer(&on_stack);  // learns this thread's stack first
  ASSERT_GE(FindCallers(on_stack), 0);

  constexpr size_t kAltBytes = 256 << 10;
  void* alt_mem = malloc(kAltBytes);
  ASSERT_NE(alt_mem, nullptr);
  stack_t alt{}, old_alt{};
  alt.ss_sp = alt_mem;
  alt.ss_size = kAltBytes;
  ASSERT_EQ(sigaltstack(&alt, &old_alt), 0);
  struct sigaction sa {}, old_sa{};
  sa.sa_handler = CaptureInHandler;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old_sa), 0);
  raise(SIGUSR1);
  sigaction(SIGUSR1, &old_sa, nullptr);
  sigaltstack(&old_alt, nullptr);
  free(alt_mem);

  int i = FindCallers(g_in_handler);
  ASSERT_GE(i, 0) << "depth " << g_in_handler.depth;
  // Past the handler's frames: the signal frame and the raise() below it.
  EXPECT_GT(g_in_handler.depth, static_cast<uint32_t>(i + 3));
}

// Whether the stack passed through the side stack's switch (in the tests
// nothing is skipped as the shim's own code: CaptureWith's 0, 0).
bool ThroughSideStack(const Chain& c) {
  auto lo = reinterpret_cast<uintptr_t>(&HeapwatchCallOnStack);
  for (uint32_t i = 0; i < c.depth; ++i) {
    if (c.pcs[i] > lo && c.pcs[i] < lo + 32) return true;
  }
  return false;
}

// A coroutine on a stack of its own (makecontext), over a guard page.
struct Coroutine {
  static constexpr size_t kGuard = 4096;
  explicit Coroutine(size_t bytes) : bytes(bytes) {
    mem = static_cast<char*>(mmap(nullptr, kGuard + bytes, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mem == MAP_FAILED || mprotect(mem, kGuard, PROT_NONE) != 0) abort();
  }
  ~Coroutine() { munmap(mem, kGuard + bytes); }
  char* stack() const { return mem + kGuard; }
  void Run(void (*entry)()) {
    getcontext(&context);
    context.uc_stack.ss_sp = stack();
    context.uc_stack.ss_size = bytes;
    context.uc_link = &back;
    makecontext(&context, entry, 0);
    swapcontext(&back, &context);
  }
  size_t bytes;
  char* mem;
  ucontext_t context, back;
};

Chain g_in_coroutine;
uintptr_t g_coroutine_frame;

__attribute__((noinline)) void CaptureInCoroutine() {
  g_coroutine_frame = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  Outer(&g_in_coroutine);
  asm volatile("" ::: "memory");
}

// A coroutine's stack is not the thread's: its size is unknown, so libunwind
// runs on the side stack, and unwinds from there back through the switch
// into the coroutine's frames. On the thread's own stack, with room, it does
// not.
TEST(UnwinderTest, CoroutineUnwindsOnTheSideStackIntoItsCallers) {
  for (bool frame_pointers : {false, true}) {
    SCOPED_TRACE(frame_pointers ? "fp" : "libunwind");
    InitUnwinder(frame_pointers, 0, 0, 1);
    ASSERT_TRUE(LoadUnwinder(&g_error)) << g_error;
    // On a thread of its own, which gives its trace cache back when it
    // exits (the tests above count them).
    std::thread([] {
      for (int round = 0; round < 20; ++round) {  // stepping, then the trace cache
        g_in_coroutine = Chain{};
        Coroutine coroutine(64 << 10);
        coroutine.Run(CaptureInCoroutine);
        int i = FindCallers(g_in_coroutine);
        ASSERT_GE(i, 0) << "round " << round << ", depth " << g_in_coroutine.depth;
        ASSERT_GT(g_in_coroutine.depth, static_cast<uint32_t>(i + 2));
        EXPECT_EQ(g_in_coroutine.pcs[i + 2], g_in_coroutine.into_above);
        EXPECT_TRUE(ThroughSideStack(g_in_coroutine));
      }
      Chain on_stack;
      Outer(&on_stack);
      ASSERT_GE(FindCallers(on_stack), 0);
      EXPECT_FALSE(ThroughSideStack(on_stack));
    }).join();
  }
}

// What a capture takes of the coroutine's stack below its caller: the pc
// buffer and a few frames; libunwind's cursor, context and DWARF state
// (~5-8 KiB, side_stack.h) are on the side stack.
TEST(UnwinderTest, CaptureTakesLittleOfACoroutinesStack) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's frames are not the build's";
#endif
  InitUnwinder(false, 0, 0, 1);
  ASSERT_TRUE(LoadUnwinder(&g_error)) << g_error;
  std::thread([] {  // as above
    for (int round = 0; round < 20; ++round) {
      Coroutine coroutine(64 << 10);
      memset(coroutine.stack(), 0xA5, coroutine.bytes);
      coroutine.Run(CaptureInCoroutine);
      ASSERT_GE(FindCallers(g_in_coroutine), 0);
      size_t untouched = 0;
      while (untouched < coroutine.bytes &&
             static_cast<unsigned char>(coroutine.stack()[untouched]) == 0xA5) {
        ++untouched;
      }
      auto deepest = reinterpret_cast<uintptr_t>(coroutine.stack()) + untouched;
      EXPECT_LT(g_coroutine_frame - deepest, 2048u) << "round " << round;
    }
  }).join();
}

// fork's prepare handler waits for unwinds in flight and holds new ones
// off until the parent's handler, so that no child is born with libunwind's
// or the loader's lock held by a thread it does not have.
// What a capture that waits for libunwind's load reads of the loading
// thread: a thread blocked on a lock sleeps; one that spins does not, also
// when its name holds what the state looks like; a thread that does not
// exist cannot be told.
TEST(UnwinderTest, ThreadSleepsTellsABlockedThreadFromARunningOne) {
  std::mutex lock;
  lock.lock();
  std::atomic<uint32_t> blocked_tid{0}, spinning_tid{0};
  std::atomic<bool> stop{false};
  std::thread blocked([&] {
    blocked_tid = static_cast<uint32_t>(syscall(SYS_gettid));
    std::lock_guard<std::mutex> hold(lock);
  });
  std::thread spinning([&] {
    pthread_setname_np(pthread_self(), ") S (");
    spinning_tid = static_cast<uint32_t>(syscall(SYS_gettid));
    while (!stop.load()) {
    }
  });
  bool slept = false;
  for (int i = 0; i < 5000 && !slept; ++i) {
    slept = blocked_tid.load() != 0 && ThreadSleeps(blocked_tid.load());
    if (!slept) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(slept);
  while (spinning_tid.load() == 0) std::this_thread::yield();
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(ThreadSleeps(spinning_tid.load()));
  EXPECT_FALSE(ThreadSleeps(0x7ffffff0));
  lock.unlock();
  stop = true;
  blocked.join();
  spinning.join();
}

TEST(UnwinderTest, ForkPrepareWaitsForUnwindsAndHoldsNewOnesOff) {
  // libunwind (the tests above left frame pointers on)
  InitUnwinder(false, 0, 0, 1);
  ASSERT_TRUE(LoadUnwinder(&g_error)) << g_error;
  std::atomic<bool> stop{false};
  std::atomic<int> unwound{0}, refused{0};
  std::thread worker([&] {
    while (!stop.load()) (Capture(1) ? unwound : refused).fetch_add(1);
  });
  auto wait_for = [](auto done) {
    for (int i = 0; i < 5000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return done();
  };
  ASSERT_TRUE(wait_for([&] { return unwound.load() > 20; }));
  UnwinderForkPrepare();
  const int refused_at_prepare = refused.load(), unwound_at_prepare = unwound.load();
  EXPECT_TRUE(wait_for([&] { return refused.load() > refused_at_prepare + 20; }));
  EXPECT_LE(unwound.load(), unwound_at_prepare + 1);  // one may have been past the check
  UnwinderForkParent();
  EXPECT_TRUE(wait_for([&] { return unwound.load() > unwound_at_prepare + 20; }));
  stop.store(true);
  worker.join();
}

}  // namespace
}  // namespace heapwatch::preload
