// A system call made directly, with glibc's syscall() instructions and errno
// (syscall_interposer.cc): for the shim's own calls where going through the
// interposed syscall() would come back to the caller.
#ifndef HEAPWATCH_PRELOAD_RAW_SYSCALL_H_
#define HEAPWATCH_PRELOAD_RAW_SYSCALL_H_

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" long heapwatch_raw_syscall(long number, ...) __attribute__((visibility("hidden")));

namespace heapwatch::preload {

// A system call inline, for fork's child handler and what it calls: no
// call into glibc (its syscall(), getpid(), close(), the vDSO's clock),
// whose pages a forked child has not touched yet, each a page fault of
// every fork (~4 us here). Returns -errno on failure; errno is left alone.
inline long InlineSyscall(long number, long a = 0, long b = 0) {
#if defined(__x86_64__)
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(number), "D"(a), "S"(b) : "rcx", "r11", "memory");
  return ret;
#else
  long ret = syscall(number, a, b);
  return ret == -1 ? -errno : ret;
#endif
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_RAW_SYSCALL_H_
