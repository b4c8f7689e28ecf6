// An executable that defines (and exports) its own malloc family, as one
// linked statically against an allocator does: its definitions come before
// any LD_PRELOAD entry, so the shim must notice that its own are never
// called, say so once and stay a pass-through (test_shim_allocators.py).
// The definitions forward to glibc's internal entry points and count.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);

static unsigned long g_calls;

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
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }

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
  return 0;
}
