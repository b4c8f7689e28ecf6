#include "loader_lock.h"

#include <gtest/gtest.h>
#include <link.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "real_allocator.h"

namespace heapwatch::preload {
namespace {

std::atomic<bool> g_inside{false};
std::atomic<bool> g_release{false};

int HoldTheList(dl_phdr_info*, size_t, void*) {
  g_inside.store(true);
  while (!g_release.load()) usleep(1000);
  return 1;
}

TEST(LoaderLockTest, FindsTheLoadersGlobals) {
  ASSERT_TRUE(ResolveRealAllocator());  // its walk over the objects finds them
  size_t size = 0;
  EXPECT_NE(LoaderGlobals(&size), nullptr);
  EXPECT_GT(size, 0u);
}

TEST(LoaderLockTest, HeldByAThreadOfThisProcessIsNoGhost) {
  ASSERT_TRUE(ResolveRealAllocator());
  EXPECT_FALSE(LoaderLockHeldByGhost());  // nobody holds it
  g_inside = false;
  g_release = false;
  std::thread holder([] { dl_iterate_phdr(HoldTheList, nullptr); });
  while (!g_inside.load()) usleep(1000);
  EXPECT_FALSE(LoaderLockHeldByGhost());  // held, by a thread that is here
  g_release = true;
  holder.join();
}

// What a single-threaded process's sampling thread asks before it loads
// libunwind itself (recorder.cc): inside a dl_iterate_phdr callback (as
// inside dlopen) the loader's lock is held, by this thread; outside, not.
TEST(LoaderLockTest, HeldInsideTheLoaderAndNotOutside) {
  ASSERT_TRUE(ResolveRealAllocator());
  EXPECT_FALSE(LoaderLockHeld());
  bool inside = false;
  dl_iterate_phdr(
      [](dl_phdr_info*, size_t, void* arg) {
        *static_cast<bool*>(arg) = LoaderLockHeld();
        return 1;
      },
      &inside);
  EXPECT_TRUE(inside);
  EXPECT_FALSE(LoaderLockHeld());
}

// A child forked while another thread held the list lock finds it held by
// a thread it does not have; one forked after the release does not.
TEST(LoaderLockTest, AChildForkedWhileAnotherThreadHeldTheListFindsAGhost) {
  ASSERT_TRUE(ResolveRealAllocator());
  auto child_says = [] {
    pid_t pid = fork();
    if (pid == 0) _exit(LoaderLockHeldByGhost() ? 1 : 0);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  g_inside = false;
  g_release = false;
  std::thread holder([] { dl_iterate_phdr(HoldTheList, nullptr); });
  while (!g_inside.load()) usleep(1000);
  EXPECT_EQ(child_says(), 1);
  g_release = true;
  holder.join();
  EXPECT_EQ(child_says(), 0);
}

}  // namespace
}  // namespace heapwatch::preload
