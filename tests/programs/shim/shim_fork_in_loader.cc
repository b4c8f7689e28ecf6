// Forks while another thread holds the loader's list lock: inside
// dl_iterate_phdr's callback, where a dlopen or dlclose of another thread
// also holds it. glibc (2.36) leaves that lock held in the child, so a child
// that calls dl_iterate_phdr waits for good; this one only allocates and
// frees (ChildWork), which alone it does without trouble. The parent first
// allocates PARENT_BLOCKS blocks of 64 KiB (so that, under the shim, it has
// sampled); the child allocates 2,048 blocks of 4 KiB and exits. A child not
// done within 5 s counts as hung (fork_child.h).
//   shim_fork_in_loader [PARENT_BLOCKS=64]
// Prints "child=done|hung|failed" and exits 1 unless done.
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "fork_child.h"

namespace {

std::atomic<bool> g_inside{false};
std::atomic<bool> g_forked{false};

int HoldTheList(dl_phdr_info*, size_t, void*) {
  g_inside.store(true);
  while (!g_forked.load()) usleep(1000);
  return 1;
}

__attribute__((noinline)) int ChildWork() { return AllocateAndFree(2048, 4096); }

}  // namespace

int main(int argc, char** argv) {
  int parent_blocks = argc > 1 ? atoi(argv[1]) : 64;
  if (parent_blocks < 0) return 2;
  AllocateAndFree(parent_blocks, 64 << 10);
  std::thread holder([] { dl_iterate_phdr(HoldTheList, nullptr); });
  while (!g_inside.load()) usleep(1000);
  ChildOutcome r = ForkAndWait(ChildWork);
  g_forked.store(true);
  holder.join();
  printf("child=%s\n", r == kChildDone ? "done" : r == kChildHung ? "hung" : "failed");
  return r == kChildDone ? 0 : 1;
}
