/* A process that spawns: COUNT times fork, the child either _exit(0)s
 * ("exit") or execs /bin/true ("exec"), or posix_spawn of /bin/true
 * ("spawn": glibc's clone with CLONE_VM and CLONE_VFORK, which copies no
 * mapping and runs no fork handler, as Python's subprocess and Go do); the
 * parent waits for each child. It
 * first allocates 1,000 blocks of 1,000 bytes, which it keeps, and 16 of
 * 1 MiB, which it frees (glibc maps and unmaps each): so that under the
 * shim it samples (and has a sender) itself, all but certainly (the 1 MB
 * alone went unsampled in one run in e^2, ~7), with a small heap. With THREADS, it first starts that many
 * threads that each allocate a block and then sleep, as a service's workers
 * would: glibc's fork then takes its path for a process with threads (every
 * arena locked, the children's resets) with or without the shim. Prints the
 * wall time per child in microseconds.
 *   shim_spawn_workload COUNT exit|exec|spawn [THREADS]
 */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double Now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

extern char** environ;

void* g_blocks[1000];

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_started;

static void* Worker(void* arg) {
  void* block = malloc(100); /* its own glibc arena, as a worker's */
  pthread_mutex_lock(&g_mu);
  ++g_started;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  for (;;) pause();
  free(block);
  return arg;
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  int count = atoi(argv[1]);
  int exec_true = strcmp(argv[2], "exec") == 0;
  int spawn = strcmp(argv[2], "spawn") == 0;
  int threads = argc > 3 ? atoi(argv[3]) : 0;
  for (int i = 0; i < threads; ++i) {
    pthread_t t;
    if (pthread_create(&t, NULL, Worker, NULL) != 0) return 1;
  }
  pthread_mutex_lock(&g_mu);
  while (g_started < threads) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  for (int i = 0; i < 1000; ++i) g_blocks[i] = malloc(1000);
  for (int i = 0; i < 16; ++i) {
    char* big = malloc(1 << 20);
    if (!big) return 1;
    big[0] = 1;
    free(big);
  }
  double start = Now();
  for (int i = 0; i < count; ++i) {
    pid_t pid;
    if (spawn) {
      char* args[] = {"true", NULL};
      if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0) return 1;
    } else {
      pid = fork();
    }
    if (pid < 0) return 1;
    if (pid == 0) {
      if (exec_true) execl("/bin/true", "true", (char*)NULL);
      _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  }
  printf("%.1f\n", (Now() - start) / count * 1e6);
  return 0;
}
