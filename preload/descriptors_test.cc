#include "descriptors.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

TEST(OwnDescriptorTest, MovesTheSocketHighAndKeepsItCloseOnExec) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  rlim_t top = limit.rlim_cur < 1024 ? limit.rlim_cur : 1024;
  OwnDescriptor s;
  ASSERT_TRUE(s.Adopt(pair[0]));
  EXPECT_GE(s.fd(), static_cast<int>(top / 4 * 3));
  EXPECT_FALSE(IsOpen(pair[0]));  // the low number is free again
  EXPECT_TRUE(fcntl(s.fd(), F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(s.StillOurs());
  // Still the same socket: what goes in comes out at the other end.
  ASSERT_EQ(write(s.fd(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(read(pair[1], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  int fd = s.fd();
  s.Close();
  EXPECT_EQ(s.fd(), -1);
  EXPECT_FALSE(IsOpen(fd));
  close(pair[1]);
}

TEST(OwnDescriptorTest, ANumberTheApplicationTookIsNeitherOursNorClosed) {
  int pair[2], theirs[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  OwnDescriptor s;
  ASSERT_TRUE(s.Adopt(pair[0]));
  int fd = s.fd();
  // The application closes it and its next socket gets the number.
  close(fd);
  EXPECT_FALSE(s.StillOurs());
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, theirs), 0);
  ASSERT_EQ(dup2(theirs[0], fd), fd);
  EXPECT_FALSE(s.StillOurs());
  s.Close();
  EXPECT_TRUE(IsOpen(fd));  // still the application's
  EXPECT_EQ(s.fd(), -1);
  close(fd);
  close(theirs[0]);
  close(theirs[1]);
  close(pair[1]);
}

TEST(DescriptorsTest, APipeMovedHighStillWorksAndKeepsItsFlags) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  int r = MoveToHighDescriptor(p[0]), w = MoveToHighDescriptor(p[1]);
  EXPECT_GT(r, p[1]);
  EXPECT_GT(w, r);
  EXPECT_FALSE(IsOpen(p[0]));
  EXPECT_FALSE(IsOpen(p[1]));
  EXPECT_TRUE(fcntl(r, F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(w, F_GETFD) & FD_CLOEXEC);
  char c = 0;
  EXPECT_EQ(read(r, &c, 1), -1);  // empty and non-blocking
  ASSERT_EQ(write(w, "y", 1), 1);
  ASSERT_EQ(read(r, &c, 1), 1);
  EXPECT_EQ(c, 'y');
  EXPECT_EQ(MoveToHighDescriptor(-1), -1);
  close(r);
  close(w);
}

TEST(OwnDescriptorTest, OnlyFilesOfTheTypeAskedForAreAdopted) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  OwnDescriptor s;
  EXPECT_FALSE(s.Adopt(p[0]));  // a socket by default
  EXPECT_EQ(s.fd(), -1);
  close(p[1]);
  OwnDescriptor maps;
  ASSERT_TRUE(maps.Adopt(open("/proc/self/maps", O_RDONLY | O_CLOEXEC), S_IFREG));
  EXPECT_TRUE(maps.StillOurs());
  maps.Close();
  EXPECT_EQ(maps.fd(), -1);
}

}  // namespace
}  // namespace heapwatch::preload
