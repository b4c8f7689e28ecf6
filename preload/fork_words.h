// The words fork's prepare and parent handlers write (recorder_fork.cc), kept
// where the parent's writes after a fork are no copy-on-write faults.
#ifndef HEAPWATCH_PRELOAD_FORK_WORDS_H_
#define HEAPWATCH_PRELOAD_FORK_WORDS_H_

#include <stdint.h>

#include <atomic>

namespace heapwatch::preload {

// The parent handler's releases of these came after the fork, on a page the
// child shared: a copy-on-write fault in the parent at every fork
// (`perf record -e page-faults`: SenderForkParent, one a fork). So they live
// in the copy token's page (ArmCopyToken, at start), which is
// MADV_WIPEONFORK: the parent's own, zero in every child, forked or copied
// without fork's handlers, as each of them must be there. Static until that
// page is mapped, or should it not be: fork's child handler then resets
// them (only if not zero, so as not to write the page otherwise).
struct ForkWords {
  // A fork is being prepared: unwinds and libunwind's load step back
  // (unwinder.cc, EnterLibunwind; unwinder_load.cc).
  std::atomic<bool> forking;
};
extern ForkWords* g_fork_words __attribute__((visibility("hidden")));
// True once g_fork_words is on the wiped page: then a child finds them zero
// without reading them (a read of a wiped page is a page fault too).
bool ForkWordsWiped();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_FORK_WORDS_H_
