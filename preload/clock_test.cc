#include "clock.h"

#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

constexpr uint64_t kMs = 1000000;

uint64_t ThreadCpuNs() { return ClockNs(CLOCK_THREAD_CPUTIME_ID); }

TEST(SleepUntil, SleepsUntilTheWordChangesAndIsWoken) {
  std::atomic<uint32_t> word{0};
  std::thread changer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    word.store(1, std::memory_order_release);
    WakeWaiters(word);
  });
  uint64_t deadline = 0;  // kForkWaitNs from the first look
  const uint64_t start = ClockNs(CLOCK_MONOTONIC), cpu_start = ThreadCpuNs();
  // A check every second at most: the wake, not a timeout, ends the sleep.
  const bool done = SleepUntil(word, [](uint32_t v) { return v == 1; }, &deadline, 1000 * kMs);
  const uint64_t waited = ClockNs(CLOCK_MONOTONIC) - start, cpu = ThreadCpuNs() - cpu_start;
  changer.join();
  EXPECT_TRUE(done);
  EXPECT_GE(waited, 150 * kMs);
  EXPECT_LT(waited, 900 * kMs);
  // A wait that yields in a loop (YieldUntil) spends most of it on a core
  // whenever one is free; a sleeping one a few system calls.
  EXPECT_LT(cpu, waited / 5) << "waited " << waited / kMs << " ms, " << cpu / kMs << " ms of CPU";
}

TEST(SleepUntil, GivesUpAtTheDeadline) {
  std::atomic<uint32_t> word{7};
  const uint64_t start = ClockNs(CLOCK_MONOTONIC);
  uint64_t deadline = start + 100 * kMs;
  const uint64_t cpu_start = ThreadCpuNs();
  EXPECT_FALSE(SleepUntil(word, [](uint32_t v) { return v != 7; }, &deadline, 30 * kMs));
  const uint64_t waited = ClockNs(CLOCK_MONOTONIC) - start;
  EXPECT_GE(waited, 100 * kMs);
  EXPECT_LT(ThreadCpuNs() - cpu_start, waited / 5);
}

TEST(SleepUntil, LooksAgainEveryCheckForWhatTheWordDoesNotCarry) {
  // done() reads a flag that changes with no wake; the word never does.
  std::atomic<uint32_t> word{0};
  std::atomic<bool> flag{false};
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    flag.store(true, std::memory_order_release);
  });
  uint64_t deadline = 0;
  const uint64_t start = ClockNs(CLOCK_MONOTONIC);
  const bool done =
      SleepUntil(word, [&](uint32_t) { return flag.load(std::memory_order_acquire); }, &deadline, 5 * kMs);
  const uint64_t waited = ClockNs(CLOCK_MONOTONIC) - start;
  setter.join();
  EXPECT_TRUE(done);
  EXPECT_LT(waited, 500 * kMs);  // kForkWaitNs (1 s) had it not looked again
}

TEST(SleepUntil, AWordThatAlreadyChangedDoesNotSleep) {
  std::atomic<uint32_t> word{3};
  uint64_t deadline = 0;
  int looks = 0;
  EXPECT_TRUE(SleepUntil(word, [&](uint32_t v) { return ++looks, v == 3; }, &deadline, kMs));
  EXPECT_EQ(looks, 1);
  EXPECT_EQ(deadline, 0u);  // no clock read either
}

}  // namespace
}  // namespace heapwatch::preload
