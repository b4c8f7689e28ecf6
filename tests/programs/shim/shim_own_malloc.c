// An executable that defines (and exports) its own malloc family, as one
// linked statically against an allocator does: its definitions come before
// any LD_PRELOAD entry, so the shim must notice that its own are never
// called, say so once and stay a pass-through (test_shim_allocators.py).
// The definitions forward to glibc's internal entry points and count.
//
// Some names reach the shim all the same: those the executable does not
// define and glibc has no PLT call of (reallocarray here; free_sized, which
// glibc 2.36 lacks and the shim exports). Each must end in the executable's
// realloc or free, as it would without the shim: the counts printed say so.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);

// C23 (glibc 2.43); defined here only where a preloaded object has it.
extern void free_sized(void*, size_t) __attribute__((weak));

static unsigned long g_calls, g_reallocs, g_frees;

void* malloc(size_t n) {
  ++g_calls;
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t m) {
  ++g_calls;
  return __libc_calloc(n, m);
}
void* realloc(void* p, size_t n) {
  ++g_calls;
  ++g_reallocs;
  return __libc_realloc(p, n);
}
void free(void* p) {
  ++g_frees;
  __libc_free(p);
}

int main(void) {
  unsigned long before = g_calls;
  for (int i = 0; i < 1000; ++i) {
    char* p = malloc(1000 + i);
    memset(p, i, 1000 + i);
    p = realloc(p, 3000);
    free(p);
  }
  // Its own malloc served every call it made.
  printf("own malloc calls: %lu\n", g_calls - before);

  unsigned long reallocs = g_reallocs, frees = g_frees;
  for (int i = 0; i < 100; ++i) {
    char* p = malloc(100);
    memset(p, 1, 100);
    p = reallocarray(p, 10 + i, 100);
    if (!p || p[99] != 1) return 1;
    if (free_sized) {
      free_sized(p, (10 + i) * 100);
    } else {
      free(p);
    }
  }
  // glibc's reallocarray calls realloc through its PLT: the executable's.
  printf("own realloc calls from reallocarray: %lu, own frees: %lu\n", g_reallocs - reallocs,
         g_frees - frees);
  return 0;
}
