#include "unwinder.h"

#include <stdint.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include <heapwatch/wire.h>

namespace heapwatch::preload {
namespace {

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

}  // namespace
}  // namespace heapwatch::preload
