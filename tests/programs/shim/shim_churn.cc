// A long-running program for reconnect tests. It keeps kMarkers "marker"
// blocks of kMarkerSize bytes live and keeps replacing them (free + malloc),
// plus background churn of other sizes, until told otherwise on stdin:
//   p   pause; print "live" and the addresses of the live marker blocks
//   r   resume
//   q   quit
// It prints "ready" once started and a heartbeat count on "p".
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace {
constexpr int kMarkers = 64;
constexpr size_t kMarkerSize = 200003;
}  // namespace

int main() {
  void* markers[kMarkers] = {};
  void* noise[256] = {};
  uint64_t x = 88172645463325252ull;
  bool paused = false;
  unsigned long rounds = 0;
  for (auto& m : markers) m = malloc(kMarkerSize);
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    pollfd p{0, POLLIN, 0};
    if (poll(&p, 1, paused ? -1 : 0) > 0) {
      char c;
      ssize_t n = read(0, &c, 1);
      if (n <= 0 || c == 'q') break;
      if (c == 'p') {
        paused = true;
        printf("live");
        for (void* m : markers) printf(" %lx", reinterpret_cast<unsigned long>(m));
        printf("\nrounds %lu\n", rounds);
        fflush(stdout);
      } else if (c == 'r') {
        paused = false;
      }
      continue;
    }
    if (paused) continue;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int k = static_cast<int>(x % kMarkers);
    free(markers[k]);
    markers[k] = malloc(kMarkerSize);
    memset(markers[k], 1, 64);
    for (int i = 0; i < 32; ++i) {
      int j = static_cast<int>((x >> (i % 48)) % 256);
      free(noise[j]);
      noise[j] = malloc(1 + (x >> 20) % 3000);
    }
    ++rounds;
    usleep(200);
  }
  for (void* m : markers) free(m);
  for (void* n : noise) free(n);
  return 0;
}
