// For the shim's test programs: runs fn() from `depth` frames of 2 KiB
// below the caller, so that the stacks of the allocations it makes end on
// other stack pages from one depth to the next (libunwind checks addresses
// on pages it has not seen with system calls: shim_errno, shim_fd_closer).
#ifndef HEAPWATCH_TESTS_PROGRAMS_SHIM_AT_DEPTH_H_
#define HEAPWATCH_TESTS_PROGRAMS_SHIM_AT_DEPTH_H_

template <typename Fn>
__attribute__((noinline)) void AtDepth(int depth, const Fn& fn) {
  volatile char frame[2048];
  frame[0] = static_cast<char>(depth);
  if (depth > 0) {
    AtDepth(depth - 1, fn);
  } else {
    fn();
  }
  asm volatile("" ::: "memory");  // a real frame, not a tail call
  frame[1] = frame[0];
}

#endif  // HEAPWATCH_TESTS_PROGRAMS_SHIM_AT_DEPTH_H_
