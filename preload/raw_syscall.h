// System calls made directly, not through glibc's wrappers.
//
// heapwatch_raw_syscall: glibc's syscall() instructions and errno
// (syscall_interposer.cc), for the shim's own calls where going through the
// interposed syscall() would come back to the caller.
//
// The inline ones (namespace sys) return -errno on failure and leave errno
// alone. The shim makes its system calls with them, not with glibc's
// wrappers: every function the shim imports from libc is a symbol the loader
// looks up at every exec under the shim (the shim is linked -z now), ~770
// instructions each on this machine's glibc 2.36 (callgrind, a preloaded
// library importing 22 of them: 137,172 -> 154,134 instructions of
// /bin/true). Also, none is a cancellation point, none touches errno, and
// fork's child handler calls into no page of glibc's that a forked child has
// not touched yet (each a page fault of every fork, ~4 us here).
#ifndef HEAPWATCH_PRELOAD_RAW_SYSCALL_H_
#define HEAPWATCH_PRELOAD_RAW_SYSCALL_H_

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern "C" long heapwatch_raw_syscall(long number, ...) __attribute__((visibility("hidden")));

namespace heapwatch::preload {

// Returns the kernel's result: -errno on failure.
inline long InlineSyscall(long number, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0,
                          long f = 0) {
#if defined(__x86_64__)
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
#else
  int saved_errno = errno;
  long ret = syscall(number, a, b, c, d, e, f);
  if (ret == -1) ret = -errno;
  errno = saved_errno;
  return ret;
#endif
}

namespace sys {

template <typename T>
long Arg(T* p) {
  return reinterpret_cast<long>(p);
}

inline void* Mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  long r = InlineSyscall(SYS_mmap, Arg(addr), static_cast<long>(length), prot, flags, fd, offset);
  return r < 0 && r > -4096 ? MAP_FAILED : reinterpret_cast<void*>(r);
}
inline long Munmap(void* addr, size_t length) {
  return InlineSyscall(SYS_munmap, Arg(addr), static_cast<long>(length));
}
inline long Mprotect(void* addr, size_t length, int prot) {
  return InlineSyscall(SYS_mprotect, Arg(addr), static_cast<long>(length), prot);
}
inline long Madvise(void* addr, size_t length, int advice) {
  return InlineSyscall(SYS_madvise, Arg(addr), static_cast<long>(length), advice);
}
inline long Open(const char* path, int flags) {
  return InlineSyscall(SYS_openat, AT_FDCWD, Arg(path), flags);
}
inline long Close(int fd) { return InlineSyscall(SYS_close, fd); }
inline long Read(int fd, void* buf, size_t n) {
  return InlineSyscall(SYS_read, fd, Arg(buf), static_cast<long>(n));
}
inline long Pread(int fd, void* buf, size_t n, uint64_t offset) {
  return InlineSyscall(SYS_pread64, fd, Arg(buf), static_cast<long>(n), static_cast<long>(offset));
}
inline long Write(int fd, const void* buf, size_t n) {
  return InlineSyscall(SYS_write, fd, Arg(buf), static_cast<long>(n));
}
inline long Readlink(const char* path, char* buf, size_t n) {
  return InlineSyscall(SYS_readlinkat, AT_FDCWD, Arg(path), Arg(buf), static_cast<long>(n));
}
inline long Fcntl(int fd, int cmd, long arg) { return InlineSyscall(SYS_fcntl, fd, cmd, arg); }
inline long Ioctl(int fd, unsigned long request) {
  return InlineSyscall(SYS_ioctl, fd, static_cast<long>(request));
}
inline long Socket(int domain, int type, int protocol) {
  return InlineSyscall(SYS_socket, domain, type, protocol);
}
inline long Connect(int fd, const sockaddr* addr, socklen_t length) {
  return InlineSyscall(SYS_connect, fd, Arg(addr), length);
}
inline long Send(int fd, const void* buf, size_t n, int flags) {
  return InlineSyscall(SYS_sendto, fd, Arg(buf), static_cast<long>(n), flags, 0, 0);
}
inline long Recv(int fd, void* buf, size_t n, int flags) {
  return InlineSyscall(SYS_recvfrom, fd, Arg(buf), static_cast<long>(n), flags, 0, 0);
}
inline long Poll(pollfd* fds, nfds_t n, int timeout_ms) {
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  return InlineSyscall(SYS_ppoll, Arg(fds), static_cast<long>(n), timeout_ms < 0 ? 0 : Arg(&ts), 0,
                       _NSIG / 8);
}
inline long Futex(void* word, int op, uint32_t value, const timespec* timeout) {
  return InlineSyscall(SYS_futex, Arg(word), op, value, Arg(timeout), 0, 0);
}
inline long Prctl(int option, long a) { return InlineSyscall(SYS_prctl, option, a, 0, 0, 0); }
inline long Nanosleep(const timespec* duration) { return InlineSyscall(SYS_nanosleep, Arg(duration), 0); }
inline long SchedYield() { return InlineSyscall(SYS_sched_yield); }
inline long Getpid() { return InlineSyscall(SYS_getpid); }
inline long Getppid() { return InlineSyscall(SYS_getppid); }
// The kernel's struct rlimit is glibc's, RLIM_INFINITY included.
inline long Getrlimit(int resource, rlimit* limit) {
  return InlineSyscall(SYS_prlimit64, 0, resource, 0, Arg(limit));
}
inline long Sigaltstack(const stack_t* next, stack_t* old) {
  return InlineSyscall(SYS_sigaltstack, Arg(next), Arg(old));
}

}  // namespace sys
}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_RAW_SYSCALL_H_
