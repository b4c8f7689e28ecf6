#include "descriptors.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "raw_syscall.h"

namespace heapwatch::preload {
namespace {

// fstat(2) itself: glibc's fstat symbol is new in 2.33 (glibc_compat.h). On
// x86-64 the kernel's struct stat is glibc's. Inline: fork's child handler
// closes the parent's socket (raw_syscall.h).
int FdStat(int fd, struct stat* st) {
  return InlineSyscall(SYS_fstat, fd, reinterpret_cast<long>(st)) == 0 ? 0 : -1;
}

}  // namespace

int MoveToHighDescriptor(int fd) {
  rlimit limit{};
  if (fd < 0 || getrlimit(RLIMIT_NOFILE, &limit) != 0) return fd;
  rlim_t top = limit.rlim_cur < 1024 ? limit.rlim_cur : 1024;
  int from = static_cast<int>(top / 4 * 3);
  if (from <= fd) return fd;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, from);
  if (high < 0) return fd;
  close(fd);
  return high;
}

bool OwnSocket::Adopt(int fd) {
  Close();
  fd = MoveToHighDescriptor(fd);
  struct stat st;
  if (FdStat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    close(fd);
    return false;
  }
  fd_ = fd;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  return true;
}

bool OwnSocket::StillOurs() const {
  struct stat st;
  return fd_ >= 0 && FdStat(fd_, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ && st.st_ino == ino_;
}

void OwnSocket::Close() {
  CloseKeepingNumber();
  Forget();
}

void OwnSocket::CloseKeepingNumber() const {
  if (StillOurs()) InlineSyscall(SYS_close, fd_);
}

}  // namespace heapwatch::preload
