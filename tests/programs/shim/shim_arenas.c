// Prints the number of arenas glibc's malloc has, once the shim's sender has
// loaded libunwind if the shim is preloaded (test_shim_api.py,
// SenderHeapTest). A thread's first call into glibc's allocator gives it an
// arena of its own; the sender's allocations (its dlopen's) come from the
// shim's, so this single-threaded program has one arena with the shim as
// without it.
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int LibunwindLoaded(void) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (!maps) return 0;
  char line[512];
  int found = 0;
  while (!found && fgets(line, sizeof line, maps)) found = strstr(line, "libunwind") != NULL;
  fclose(maps);
  return found;
}

int main(void) {
  // Sampled at the default rate too: 16 MiB, 1 MiB at a time.
  for (int i = 0; i < 16; ++i) {
    char* volatile block = malloc(1 << 20);
    block[0] = 1;
    free(block);
  }
  const char* preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "libheapwatch")) {
    for (int i = 0; i < 500 && !LibunwindLoaded(); ++i) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    if (!LibunwindLoaded()) {
      fprintf(stderr, "libunwind not loaded after 5 s\n");
      return 2;
    }
  }
  // malloc_info writes one <heap nr="N"> element an arena.
  char* xml = NULL;
  size_t size = 0;
  FILE* out = open_memstream(&xml, &size);
  if (!out || malloc_info(0, out) != 0 || fclose(out) != 0) return 3;
  int arenas = 0;
  for (const char* p = xml; (p = strstr(p, "<heap nr=")) != NULL; ++p) ++arenas;
  free(xml);
  printf("%d\n", arenas);
  return 0;
}
