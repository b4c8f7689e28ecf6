// A system call made directly, with glibc's syscall() instructions and errno
// (syscall_interposer.cc): for the shim's own calls where going through the
// interposed syscall() would come back to the caller.
#ifndef HEAPWATCH_PRELOAD_RAW_SYSCALL_H_
#define HEAPWATCH_PRELOAD_RAW_SYSCALL_H_

extern "C" long heapwatch_raw_syscall(long number, ...) __attribute__((visibility("hidden")));

#endif  // HEAPWATCH_PRELOAD_RAW_SYSCALL_H_
