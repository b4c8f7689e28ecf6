// vfork as the process's first act: the child allocates (at
// HEAPWATCH_SAMPLE_BYTES=1 the process's first sample, taken in the child,
// on memory and a thread state it shares with the parent) and _exits. Then
// the parent keeps 10 blocks of 44,444 bytes and exits.
//   shim_vfork
// Prints "child=STATUS".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void* g_blocks[10];

int main() {
  pid_t pid = vfork();
  if (pid == 0) {
    void* p = malloc(100);
    _exit(p != nullptr ? 0 : 3);
  }
  if (pid < 0) return 1;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 1;
  for (void*& p : g_blocks) {
    p = malloc(44444);
    if (p != nullptr) memset(p, 9, 16);
  }
  printf("child=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}
