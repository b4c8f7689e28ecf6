/* A program built against musl (musl-gcc), as in an Alpine image, for the
 * shim preloaded into it: musl's ld.so used to stop it (exit 127) on the
 * shim's one glibc-only symbol. The shim must now load, say so once and pass
 * every call through. Exercises the allocation API, musl's own allocations
 * (strdup, getline, fopen), threads and fork, and prints checksums only.
 * With an argument it runs again first, as a program the first one execs:
 * the shim must say its line once for both.
 *   shim_musl [exec] */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long Churn(unsigned seed) {
  void* blocks[64] = {0};
  unsigned long sum = 0;
  for (unsigned i = 0; i < 20000; ++i) {
    unsigned k = (i * 2654435761u + seed) % 64;
    size_t size = 1 + (i * 7919u + seed) % 5000;
    if (blocks[k]) {
      sum += ((unsigned char*)blocks[k])[0];
      blocks[k] = (i & 1) ? realloc(blocks[k], size) : (free(blocks[k]), calloc(1, size));
    } else if (i % 3 == 0) {
      void* p = NULL;
      if (posix_memalign(&p, 64, size) == 0) blocks[k] = p;
    } else {
      blocks[k] = aligned_alloc(16, (size + 15) & ~(size_t)15);
    }
    if (blocks[k]) ((unsigned char*)blocks[k])[0] = (unsigned char)i;
  }
  for (unsigned k = 0; k < 64; ++k) free(blocks[k]);
  return sum;
}

static void* Thread(void* arg) {
  static unsigned long sums[4];
  unsigned n = (unsigned)(uintptr_t)arg;
  sums[n] = Churn(n);
  return &sums[n];
}

int main(int argc, char** argv) {
  if (argc > 1) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
      execl("/proc/self/exe", argv[0], (char*)NULL);
      _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  }
  unsigned long total = Churn(99);
  pthread_t threads[4];
  for (unsigned n = 0; n < 4; ++n) pthread_create(&threads[n], NULL, Thread, (void*)(uintptr_t)n);
  for (unsigned n = 0; n < 4; ++n) {
    void* r;
    pthread_join(threads[n], &r);
    total += *(unsigned long*)r;
  }
  char* copy = strdup("allocated by musl itself");
  size_t copy_len = strlen(copy);
  free(copy);
  FILE* f = fopen("/proc/self/cmdline", "r");
  char* line = NULL;
  size_t cap = 0;
  ssize_t got = f ? getline(&line, &cap, f) : -1;
  free(line);
  if (f) fclose(f);
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) _exit((int)(Churn(7) % 200));
  int status = 0;
  waitpid(child, &status, 0);
  printf("checksum %lu, strdup %zu, getline %d, child exit %d\n", total, copy_len, got > 0,
         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}
