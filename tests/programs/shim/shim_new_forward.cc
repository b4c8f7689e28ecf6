// A C++ runtime's operator new and delete that are neither libstdc++'s nor
// an allocator's own: they call malloc and free, as libc++'s do. Preloaded
// after the shim (LD_PRELOAD=libheapwatch.so:libshim_new_forward.so), the
// shim's operators forward to these, and every byte must be counted once:
// by the shim's malloc, not also by its operator new.
#include <stdlib.h>

#include <new>

void* operator new(size_t n) {
  if (void* p = malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  if (void* p = malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }
