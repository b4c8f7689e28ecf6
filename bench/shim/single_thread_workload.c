// shim_single_thread_workload MODE N [FILE]: a single-threaded program whose
// speed depends on whether glibc counts it as multi-threaded, which any
// second thread makes it for good (the shim's sender is one, from the
// process's first sample on). It allocates 16 MiB first, so that the shim
// samples and starts its sender, then times one loop:
//   getc    reads FILE byte by byte with getc (N is ignored)
//   putc    writes N bytes to /dev/null with putc
//   printf  prints N short lines to /dev/null with fprintf
//   malloc  N malloc/free pairs of 2-3 KiB (past glibc's per-thread cache)
// It prints "MODE seconds checksum" to stderr: the loop's CPU time on this
// thread (a sender's is not in it, nor the time others took the CPU).
// run_single_thread.sh drives it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double CpuNow(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s getc|putc|printf|malloc N [FILE]\n", argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  long n = atol(argv[2]);
  for (int i = 0; i < 16; i++) {
    char* volatile p = malloc(1 << 20);
    p[0] = 1;
    free(p);
  }
  unsigned long sum = 0;
  double t0 = CpuNow();
  if (strcmp(mode, "getc") == 0 && argc > 3) {
    FILE* f = fopen(argv[3], "r");
    if (!f) {
      perror(argv[3]);
      return 1;
    }
    for (int c; (c = getc(f)) != EOF;) sum += (unsigned)c;
    fclose(f);
  } else if (strcmp(mode, "putc") == 0 || strcmp(mode, "printf") == 0) {
    FILE* f = fopen("/dev/null", "w");
    if (!f) {
      perror("/dev/null");
      return 1;
    }
    if (mode[1] == 'u') {
      for (long i = 0; i < n; i++) sum += (unsigned)putc('a' + (int)(i & 15), f);
    } else {
      for (long i = 0; i < n; i++) sum += (unsigned)fprintf(f, "%ld\n", i);
    }
    fclose(f);
  } else if (strcmp(mode, "malloc") == 0) {
    for (long i = 0; i < n; i++) {
      char* volatile p = malloc(2048 + (size_t)(i & 1023));
      p[0] = (char)i;
      sum += (unsigned char)p[0];
      free(p);
    }
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  fprintf(stderr, "%s %.4f %lu\n", mode, CpuNow() - t0, sum);
  return 0;
}
