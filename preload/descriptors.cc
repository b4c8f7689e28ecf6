#include "descriptors.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "raw_memory.h"
#include "raw_syscall.h"

namespace heapwatch::preload {
namespace {

// fstat(2) itself: glibc's fstat symbol is new in 2.33. On
// x86-64 the kernel's struct stat is glibc's. Inline: fork's child handler
// closes the parent's socket (raw_syscall.h).
int FdStat(int fd, struct stat* st) {
  return InlineSyscall(SYS_fstat, fd, reinterpret_cast<long>(st)) == 0 ? 0 : -1;
}

// fd 2 at start: 0 not noted yet, 1 closed, 2 open (g_stderr_dev/ino).
int g_stderr_state = 0;
dev_t g_stderr_dev = 0;
ino_t g_stderr_ino = 0;
}  // namespace

void NoteStandardError() {
  struct stat st;
  if (FdStat(STDERR_FILENO, &st) != 0) {
    g_stderr_state = 1;
    return;
  }
  g_stderr_dev = st.st_dev;
  g_stderr_ino = st.st_ino;
  g_stderr_state = 2;
}

bool StandardErrorAsNoted() {
  if (g_stderr_state == 0) return true;
  struct stat st;
  if (FdStat(STDERR_FILENO, &st) != 0) return false;
  return g_stderr_state == 2 && st.st_dev == g_stderr_dev && st.st_ino == g_stderr_ino;
}

int MoveToHighDescriptor(int fd) {
  rlimit limit{};
  if (fd < 0 || sys::Getrlimit(RLIMIT_NOFILE, &limit) != 0) return fd;
  rlim_t top = limit.rlim_cur < 1024 ? limit.rlim_cur : 1024;
  int from = static_cast<int>(top / 4 * 3);
  if (from <= fd) return fd;
  int high = static_cast<int>(sys::Fcntl(fd, F_DUPFD_CLOEXEC, from));
  if (high < 0) return fd;
  sys::Close(fd);
  return high;
}

bool OwnDescriptor::Adopt(int fd, unsigned type) {
  Close();
  fd = MoveToHighDescriptor(fd);
  struct stat st;
  if (FdStat(fd, &st) != 0 || (st.st_mode & S_IFMT) != type) {
    sys::Close(fd);
    return false;
  }
  fd_ = fd;
  type_ = type;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  return true;
}

bool OwnDescriptor::StillOurs() const {
  struct stat st;
  return fd_ >= 0 && FdStat(fd_, &st) == 0 && (st.st_mode & S_IFMT) == type_ && st.st_dev == dev_ &&
         st.st_ino == ino_;
}

void OwnDescriptor::Close() {
  CloseKeepingNumber();
  Forget();
}

HEAPWATCH_FORK_CHILD_CODE void OwnDescriptor::CloseKeepingNumber() const {
  if (StillOurs()) InlineSyscall(SYS_close, fd_);
}

}  // namespace heapwatch::preload
