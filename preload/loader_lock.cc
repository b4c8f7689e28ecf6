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

constexpr size_t kMaxBytes = 64 << 10;  // glibc 2.36's globals are ~4 KiB

// Whether held(mutex) for one of the loader's held recursive locks.
template <typename Held>
bool AnyHeld(Held held) {
  size_t size = 0;
  const auto* base = static_cast<const char*>(LoaderGlobals(&size));
  if (!base || size > kMaxBytes) return false;
  for (size_t off = 0; off + sizeof(pthread_mutex_t) <= size; off += alignof(pthread_mutex_t)) {
    const auto* m = reinterpret_cast<const pthread_mutex_t*>(base + off);
    if (HeldRecursive(m) && held(m)) return true;
  }
  return false;
}

}  // namespace

bool LoaderLockHeldByGhost() {
  const long pid = sys::Getpid();
  return AnyHeld([pid](const pthread_mutex_t* m) {
    return InlineSyscall(SYS_tgkill, pid, m->__data.__owner, 0) == -ESRCH;
  });
}

bool LoaderLockHeld() {
  size_t size = 0;
  if (!LoaderGlobals(&size) || size > kMaxBytes) return true;  // cannot tell
  return AnyHeld([](const pthread_mutex_t*) { return true; });
}

}  // namespace heapwatch::preload
