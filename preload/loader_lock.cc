#include "loader_lock.h"

#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "raw_syscall.h"

namespace heapwatch::preload {
namespace {

// A recursive mutex, held: glibc's pthread_mutex_t layout is public ABI. The
// bounds keep other data from passing for one (a pointer's halves fail the
// lock word's 1 or 2, or the count's bound).
bool HeldRecursive(const pthread_mutex_t* m) {
  const auto& d = m->__data;
  constexpr int kMaxPid = 1 << 22;  // the kernel's PID_MAX_LIMIT on 64-bit
  return (d.__lock == 1 || d.__lock == 2) && d.__count >= 1 && d.__count <= 4096 && d.__owner > 0 &&
         d.__owner <= kMaxPid && d.__nusers >= 1 && d.__nusers <= 4096 &&
         (d.__kind & 3) == PTHREAD_MUTEX_RECURSIVE_NP;
}

}  // namespace

bool LoaderLockHeldByGhost() {
  size_t size = 0;
  const auto* base = static_cast<const char*>(LoaderGlobals(&size));
  constexpr size_t kMaxBytes = 64 << 10;  // glibc 2.36's are ~4 KiB
  if (!base || size > kMaxBytes) return false;
  const long pid = sys::Getpid();
  for (size_t off = 0; off + sizeof(pthread_mutex_t) <= size; off += alignof(pthread_mutex_t)) {
    const auto* m = reinterpret_cast<const pthread_mutex_t*>(base + off);
    if (HeldRecursive(m) && InlineSyscall(SYS_tgkill, pid, m->__data.__owner, 0) == -ESRCH) return true;
  }
  return false;
}

}  // namespace heapwatch::preload
