// pipe2, interposed for libunwind's sake: the pipe it opens to check
// addresses (at its set-up, and again whenever a read of it fails) moves to
// high descriptor numbers, out of the way of an application that closes
// every descriptor it did not open and reuses the numbers (descriptors.h).
// Anyone else's pipe2 is the real one, untouched.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "descriptors.h"
#include "next_function.h"
#include "unwinder.h"

#define HW_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using Pipe2Fn = int (*)(int*, int);
std::atomic<Pipe2Fn> g_real_pipe2{nullptr};

int RealPipe2(int fds[2], int flags) {
  Pipe2Fn real = heapwatch::preload::NextFunction(&g_real_pipe2, "pipe2");
  if (!real) return static_cast<int>(syscall(SYS_pipe2, fds, flags));
  return real(fds, flags);
}

}  // namespace

HW_EXPORT int pipe2(int fds[2], int flags) {
  int rc = RealPipe2(fds, flags);
  if (rc == 0 && heapwatch::preload::InsideLibunwind()) {
    fds[0] = heapwatch::preload::MoveToHighDescriptor(fds[0]);
    fds[1] = heapwatch::preload::MoveToHighDescriptor(fds[1]);
  }
  return rc;
}
