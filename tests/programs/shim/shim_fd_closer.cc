// Closes every file descriptor it did not open, as daemons do, under a
// shim that is connected; then talks over sockets of its own, which take
// the lowest free numbers (the shim's socket had one of them). Commands on
// stdin, one per line, each answered with one line:
//   c               close every descriptor from 3 up           -> "closed"
//   x SECONDS       for SECONDS, 16 socket pairs pass messages  -> "exchanged N"
//                   both ways, each checked byte for byte, and      or "bad ..."
//                   64 KiB blocks come and go in between, from
//                   0-15 frames of 2 KiB down
//   k COUNT         COUNT marker blocks (kMarkerBytes) from      -> "kept"
//                   KeptAlloc, kept live
//   q               exit 0
// It prints "ready" first. For tests/e2e/test_shim_reconnect.py.
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "at_depth.h"

namespace {

constexpr size_t kMarkerBytes = 300007;
constexpr int kPairs = 16;
constexpr size_t kMessage = 256;
void* g_kept[1024];
int g_kept_count = 0;

__attribute__((noinline)) void* KeptAlloc(size_t bytes) {
  void* block = malloc(bytes);
  if (block != nullptr) memset(block, 7, 64);
  asm volatile("" ::: "memory");
  return block;
}

// 64 KiB blocks come and go.
void Churn() {
  void* blocks[4];
  for (auto& b : blocks) {
    b = malloc(65536);
    if (b) memset(b, 1, 64);
  }
  for (auto* b : blocks) free(b);
}

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Writes one message on `from` and reads it back on `to`; "" if it came
// through whole and unchanged, otherwise what went wrong.
const char* PassOne(int from, int to, unsigned long n, int pair) {
  unsigned char out[kMessage], in[kMessage];
  for (size_t i = 0; i < kMessage; ++i) out[i] = static_cast<unsigned char>((n * 131 + i * 7 + pair) & 0xff);
  if (write(from, out, kMessage) != static_cast<ssize_t>(kMessage)) return "write failed";
  size_t got = 0;
  while (got < kMessage) {
    pollfd p{to, POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) return "message lost (nothing to read for 2 s)";
    ssize_t r = read(to, in + got, kMessage - got);
    if (r <= 0) return r == 0 ? "end of stream" : "read failed";
    got += static_cast<size_t>(r);
  }
  if (memcmp(in, out, kMessage) != 0) return "message changed";
  // Nothing more may be waiting: bytes no one wrote.
  pollfd p{to, POLLIN, 0};
  if (poll(&p, 1, 0) == 1) return "bytes that were never written";
  return "";
}

bool Exchange(double seconds, unsigned long* messages) {
  int fds[kPairs][2];
  for (auto& pair : fds) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
      printf("bad socketpair: %s\n", strerror(errno));
      return false;
    }
  }
  double end = Now() + seconds;
  unsigned long n = 0;
  const char* bad = "";
  int bad_pair = -1;
  while (Now() < end && !*bad) {
    for (int i = 0; i < kPairs && !*bad; ++i) {
      bad = PassOne(fds[i][0], fds[i][1], n, i);
      if (!*bad) bad = PassOne(fds[i][1], fds[i][0], n, i);
      if (*bad) bad_pair = i;
      ++n;
    }
    AtDepth(static_cast<int>(n / kPairs % 16), Churn);  // stacks on other pages each time
  }
  if (*bad) {
    printf("bad pair %d (fds %d, %d) after %lu messages: %s (errno %s)\n", bad_pair, fds[bad_pair][0],
           fds[bad_pair][1], n, bad, strerror(errno));
    return false;
  }
  for (auto& pair : fds) {
    close(pair[0]);
    close(pair[1]);
  }
  *messages = n;
  return true;
}

}  // namespace

int main() {
  char line[256];
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof(line), stdin) != nullptr) {
    if (line[0] == 'c') {
      // close_range(3, ~0U, 0), or where the kernel lacks it, a loop.
      if (close_range(3, ~0U, 0) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (max > 0 ? max : 1024); ++fd) close(static_cast<int>(fd));
      }
      printf("closed\n");
    } else if (line[0] == 'x') {
      double seconds = atof(line + 1);
      unsigned long messages = 0;
      if (!Exchange(seconds, &messages)) {
        fflush(stdout);
        return 1;
      }
      printf("exchanged %lu\n", messages);
    } else if (line[0] == 'k') {
      int count = atoi(line + 1);
      if (count < 0 || g_kept_count + count > 1024) return 2;
      for (int i = 0; i < count; ++i) g_kept[g_kept_count++] = KeptAlloc(kMarkerBytes);
      printf("kept\n");
    } else if (line[0] == 'q') {
      return 0;
    } else {
      printf("error command %s", line);
      return 1;
    }
    fflush(stdout);
  }
  return 0;
}
