// unshare and setns, interposed for the calls the kernel allows only to a
// process with one thread: a new user namespace (unshare(CLONE_NEWUSER),
// which implies CLONE_THREAD), joining one (setns), and joining a mount
// namespace (setns(CLONE_NEWNS), which needs the filesystem context unshared,
// and threads share it). The shim's sender is a thread of its own, so under
// the shim these failed with EINVAL in a program that has no other thread:
// `unshare -U`, a sandbox that maps itself to root, `nsenter -m`. Around
// them the sender stops (its connection stays) and starts again after.
// Anyone else's calls go straight through.
//
// And the calls that change the process's credentials (setuid and its kin,
// setgroups): glibc makes every thread it knows make them too (its setxid
// signal), but the sender is no thread of glibc's (sender.cc), so a task
// that kept the old credentials, root's say, would outlive a daemon's drop
// of them. After them the sender makes the same call (sender.h).
//
// Also chroot, and both calls into a mount or user namespace: libunwind is
// loaded at a process's first sample (unwinder.h), by path, and a process
// that is about to change what its paths name (a daemon that chroots, a
// sandbox that pivots into a new root) loads it before.
#include <errno.h>
#include <grp.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "next_function.h"
#include "raw_syscall.h"
#include "recorder.h"
#include "sender.h"

#define HW_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using UnshareFn = int (*)(int);
using SetnsFn = int (*)(int, int);
using ChrootFn = int (*)(const char*);
std::atomic<UnshareFn> g_real_unshare{nullptr};
std::atomic<SetnsFn> g_real_setns{nullptr};
std::atomic<ChrootFn> g_real_chroot{nullptr};

// How long a call that still fails with EINVAL is retried once the sender is
// gone: PauseSender returns when the kernel clears the task's tid, a
// little before the thread leaves its thread group and gives up its share of
// the filesystem context (1 run in 300 of shim_unshare failed without it).
constexpr int kRetries = 100;
constexpr long kRetryNs = 100000;  // 0.1 ms, so at most ~10 ms

// `call()` with the sender stopped; its result and errno.
template <typename Call>
int WithoutSender(Call call) {
  heapwatch::preload::SenderPauseScope one_at_a_time;
  bool paused = heapwatch::preload::PauseSender();
  int rc = call();
  for (int i = 0; paused && rc != 0 && errno == EINVAL && i < kRetries; ++i) {
    timespec ts{0, kRetryNs};
    syscall(SYS_nanosleep, &ts, nullptr);
    rc = call();
  }
  int saved_errno = errno;
  if (paused) heapwatch::preload::ResumeSender();
  errno = saved_errno;
  return rc;
}

int RealUnshare(int flags) {
  UnshareFn real = heapwatch::preload::NextFunction(&g_real_unshare, "unshare");
  if (!real) return static_cast<int>(heapwatch_raw_syscall(SYS_unshare, flags));
  return real(flags);
}

int RealSetns(int fd, int nstype) {
  SetnsFn real = heapwatch::preload::NextFunction(&g_real_setns, "setns");
  if (!real) return static_cast<int>(heapwatch_raw_syscall(SYS_setns, fd, nstype));
  return real(fd, nstype);
}

// `call` of the next definition of `name`; once it succeeded, the sender
// makes the system call it made (sender.h, SenderFollowCredentials).
template <typename Fn, typename Call>
int WithNewCredentials(std::atomic<Fn>* slot, const char* name, Call call, long number, long a, long b = 0,
                       long c = 0) {
  Fn real = heapwatch::preload::NextFunction(slot, name);
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  const int rc = call(real);
  if (rc == 0) {
    const int saved_errno = errno;
    heapwatch::preload::SenderFollowCredentials(number, a, b, c);
    errno = saved_errno;
  }
  return rc;
}

using IdFn = int (*)(unsigned);
using TwoIdsFn = int (*)(unsigned, unsigned);
using ThreeIdsFn = int (*)(unsigned, unsigned, unsigned);
using SetgroupsFn = int (*)(size_t, const gid_t*);
std::atomic<IdFn> g_real_setuid{nullptr}, g_real_setgid{nullptr}, g_real_seteuid{nullptr},
    g_real_setegid{nullptr};
std::atomic<TwoIdsFn> g_real_setreuid{nullptr}, g_real_setregid{nullptr};
std::atomic<ThreeIdsFn> g_real_setresuid{nullptr}, g_real_setresgid{nullptr};
std::atomic<SetgroupsFn> g_real_setgroups{nullptr};

}  // namespace

// Each with the system call glibc's wrapper makes (seteuid and setegid are
// setresuid and setresgid that leave two ids as they are).
constexpr long kKeep = static_cast<unsigned>(-1);
HW_EXPORT int setuid(uid_t id) {
  return WithNewCredentials(&g_real_setuid, "setuid", [id](IdFn f) { return f(id); }, SYS_setuid, id);
}
HW_EXPORT int setgid(gid_t id) {
  return WithNewCredentials(&g_real_setgid, "setgid", [id](IdFn f) { return f(id); }, SYS_setgid, id);
}
HW_EXPORT int seteuid(uid_t id) {
  return WithNewCredentials(&g_real_seteuid, "seteuid", [id](IdFn f) { return f(id); }, SYS_setresuid, kKeep,
                            id, kKeep);
}
HW_EXPORT int setegid(gid_t id) {
  return WithNewCredentials(&g_real_setegid, "setegid", [id](IdFn f) { return f(id); }, SYS_setresgid, kKeep,
                            id, kKeep);
}
HW_EXPORT int setreuid(uid_t r, uid_t e) {
  return WithNewCredentials(&g_real_setreuid, "setreuid", [=](TwoIdsFn f) { return f(r, e); }, SYS_setreuid, r, e);
}
HW_EXPORT int setregid(gid_t r, gid_t e) {
  return WithNewCredentials(&g_real_setregid, "setregid", [=](TwoIdsFn f) { return f(r, e); }, SYS_setregid, r, e);
}
HW_EXPORT int setresuid(uid_t r, uid_t e, uid_t s) {
  return WithNewCredentials(&g_real_setresuid, "setresuid", [=](ThreeIdsFn f) { return f(r, e, s); },
                            SYS_setresuid, r, e, s);
}
HW_EXPORT int setresgid(gid_t r, gid_t e, gid_t s) {
  return WithNewCredentials(&g_real_setresgid, "setresgid", [=](ThreeIdsFn f) { return f(r, e, s); },
                            SYS_setresgid, r, e, s);
}
HW_EXPORT int setgroups(size_t n, const gid_t* groups) {
  return WithNewCredentials(&g_real_setgroups, "setgroups", [=](SetgroupsFn f) { return f(n, groups); },
                            SYS_setgroups, static_cast<long>(n), reinterpret_cast<long>(groups));
}

HW_EXPORT int chroot(const char* path) {
  heapwatch::preload::LoadUnwinderBeforeLeavingFiles();
  ChrootFn real = heapwatch::preload::NextFunction(&g_real_chroot, "chroot");
  if (!real) return static_cast<int>(heapwatch_raw_syscall(SYS_chroot, path));
  return real(path);
}

HW_EXPORT int unshare(int flags) {
  if (flags & (CLONE_NEWNS | CLONE_NEWUSER)) heapwatch::preload::LoadUnwinderBeforeLeavingFiles();
  // CLONE_NEWUSER implies CLONE_THREAD; these three need one thread.
  if ((flags & (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)) == 0) {
    return RealUnshare(flags);
  }
  return WithoutSender([flags] { return RealUnshare(flags); });
}

HW_EXPORT int setns(int fd, int nstype) {
  // 0: the type of the namespace the descriptor names (asked of it, Linux
  // 4.11; a tool that joins network namespaces by descriptor does not stop
  // the sender each time); a pidfd's nstype is a set of types.
  int type = nstype;
  if (type == 0) {
    long asked = heapwatch::preload::sys::Ioctl(fd, NS_GET_NSTYPE);
    type = asked < 0 ? -1 : static_cast<int>(asked);
  }
  if (type > 0 && (type & (CLONE_NEWUSER | CLONE_NEWNS)) == 0) return RealSetns(fd, nstype);
  heapwatch::preload::LoadUnwinderBeforeLeavingFiles();
  return WithoutSender([fd, nstype] { return RealSetns(fd, nstype); });
}

// syscall(SYS_unshare) and syscall(SYS_setns) come here (syscall_interposer.cc).
extern "C" __attribute__((visibility("hidden"))) long HeapwatchSyscallUnshare(long flags) {
  return unshare(static_cast<int>(flags));
}
extern "C" __attribute__((visibility("hidden"))) long HeapwatchSyscallSetns(long fd, long nstype) {
  return setns(static_cast<int>(fd), static_cast<int>(nstype));
}
