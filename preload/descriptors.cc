#include "descriptors.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace heapwatch::preload {
namespace {

// fstat(2) itself: glibc's fstat symbol is new in 2.33 (glibc_compat.h). On
// x86-64 the kernel's struct stat is glibc's.
int FdStat(int fd, struct stat* st) { return static_cast<int>(syscall(SYS_fstat, fd, st)); }

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
  if (StillOurs()) close(fd_);
  fd_ = -1;
}

}  // namespace heapwatch::preload
