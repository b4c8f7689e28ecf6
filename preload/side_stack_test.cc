#include "side_stack.h"

#include <stdint.h>

#include <thread>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

uintptr_t g_frame = 0;

// Notes where its frame is and hands its arguments back, one in the other.
__attribute__((noinline)) uint32_t NoteFrame(void** out, uint32_t max) {
  g_frame = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  out[0] = reinterpret_cast<void*>(uintptr_t{max} * 2);
  return max + 1;
}

TEST(SideStackTest, RunsTheFunctionOnItsOwnStackWithItsArgumentsAndResult) {
  void* out[1] = {nullptr};
  ASSERT_EQ(RunOnSideStack(NoteFrame, out, 20), 21u);
  EXPECT_EQ(out[0], reinterpret_cast<void*>(40));
  EXPECT_TRUE(OnSideStack(g_frame));
  EXPECT_FALSE(OnSideStack(reinterpret_cast<uintptr_t>(__builtin_frame_address(0))));
  const uintptr_t first = g_frame;

  // Dropped, it comes back at the next call (where mmap puts it).
  DropSideStack();
  EXPECT_FALSE(OnSideStack(first));
  ASSERT_EQ(RunOnSideStack(NoteFrame, out, 1), 2u);
  EXPECT_TRUE(OnSideStack(g_frame));
}

TEST(SideStackTest, EachThreadHasItsOwnAndNoneAfterItsRelease) {
  void* out[1];
  ASSERT_EQ(RunOnSideStack(NoteFrame, out, 1), 2u);
  const uintptr_t main_frame = g_frame;
  std::thread([&] {
    ASSERT_EQ(RunOnSideStack(NoteFrame, out, 2), 3u);
    EXPECT_TRUE(OnSideStack(g_frame));
    EXPECT_FALSE(OnSideStack(main_frame));
    ReleaseSideStack();
    EXPECT_FALSE(OnSideStack(g_frame));
    g_frame = 0;
    EXPECT_EQ(RunOnSideStack(NoteFrame, out, 3), 0u);
    EXPECT_EQ(g_frame, 0u) << "called after the release";
  }).join();
  EXPECT_TRUE(OnSideStack(main_frame));
}

// The stack's full depth is there, and its end is a guard page (an overflow
// faults instead of writing over what lies below).
__attribute__((noinline)) uint32_t UseAlmostAll(void** out, uint32_t) {
  volatile char big[kSideStackBytes - 2048];
  big[0] = 1;
  big[sizeof(big) - 1] = 2;
  out[0] = reinterpret_cast<void*>(static_cast<uintptr_t>(big[0] + big[sizeof(big) - 1]));
  return 1;
}

TEST(SideStackTest, HoldsItsSizeOverAGuardPage) {
  void* out[1] = {nullptr};
  ASSERT_EQ(RunOnSideStack(UseAlmostAll, out, 0), 1u);
  EXPECT_EQ(out[0], reinterpret_cast<void*>(3));
  ASSERT_EQ(RunOnSideStack(NoteFrame, out, 0), 1u);
  auto guard = reinterpret_cast<volatile char*>(g_frame - (g_frame % 4096) - kSideStackBytes);
  EXPECT_FALSE(OnSideStack(reinterpret_cast<uintptr_t>(guard)));
  EXPECT_DEATH(guard[0] = 1, "");
}

}  // namespace
}  // namespace heapwatch::preload
