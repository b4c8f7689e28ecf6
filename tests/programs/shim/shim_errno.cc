// errno across allocations: malloc and free that succeed leave errno as it
// was, as glibc's do, sampled or not. The blocks come from 0-15 frames of
// 2 KiB down, so that the samples' stacks end on other pages each time
// (libunwind checks such addresses with system calls). Prints
// "errno kept in N calls" or the first calls that changed it.
//   shim_errno [ROUNDS=2000]
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "at_depth.h"

namespace {

int g_changed = 0, g_calls = 0;

void Check(const char* what) {
  ++g_calls;
  if (errno == ENOENT) return;
  if (g_changed++ < 3) printf("%s #%d left errno %d (%s)\n", what, g_calls, errno, strerror(errno));
}

void Churn() {
  for (int i = 0; i < 8; ++i) {
    errno = ENOENT;
    void* p = malloc(4096 + static_cast<size_t>(i) * 512);
    Check("malloc");
    errno = ENOENT;
    p = realloc(p, 65536);
    Check("realloc");
    errno = ENOENT;
    free(p);
    Check("free");
    errno = ENOENT;
    char* q = new char[1000];
    Check("new[]");
    errno = ENOENT;
    delete[] q;
    Check("delete[]");
  }
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 2000;
  for (int n = 0; n < rounds; ++n) AtDepth(n % 16, Churn);
  if (g_changed == 0) printf("errno kept in %d calls\n", g_calls);
  return g_changed == 0 ? 0 : 1;
}
