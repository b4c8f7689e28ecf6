#include "side_stack.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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

std::atomic<int> g_phase{0};

// Stays on its stack until told to go.
uint32_t Hold(void**, uint32_t) {
  g_phase = 1;
  while (g_phase != 2) std::this_thread::yield();
  return 1;
}

TEST(SideStackTest, SharedStackServesOneThreadAtATime) {
  void* out[1];
  ASSERT_EQ(RunOnSharedStack(NoteFrame, out, 4), 5u);
  const uintptr_t shared = g_frame;
  EXPECT_FALSE(OnSideStack(shared)) << "not this thread's own";

  std::thread holder([] {
    void* unused[1];
    EXPECT_EQ(RunOnSharedStack(Hold, unused, 0), 1u);
  });
  while (g_phase != 1) std::this_thread::yield();
  g_frame = 0;
  EXPECT_EQ(RunOnSharedStack(NoteFrame, out, 1), 0u);
  EXPECT_EQ(g_frame, 0u) << "called while another thread had the stack";
  g_phase = 2;
  holder.join();

  std::thread([&] { EXPECT_EQ(RunOnSharedStack(NoteFrame, out, 1), 2u); }).join();
  EXPECT_EQ(g_frame, shared) << "the same stack for every thread";
}

TEST(SideStackTest, AChildForkedWhileAnotherThreadHeldTheSharedStackHasItFree) {
  g_phase = 0;
  std::thread holder([] {
    void* unused[1];
    EXPECT_EQ(RunOnSharedStack(Hold, unused, 0), 1u);
  });
  while (g_phase != 1) std::this_thread::yield();
  pid_t pid = fork();
  if (pid == 0) {
    void* out[1];
    // Still taken, by a thread the child does not have; then freed.
    int held = RunOnSharedStack(NoteFrame, out, 1) == 0;
    SideStackForkChild();
    int freed = RunOnSharedStack(NoteFrame, out, 1) == 2u;
    _exit(held + 2 * freed);
  }
  g_phase = 2;
  holder.join();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << "1: held in the child, 2: free after SideStackForkChild";
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
