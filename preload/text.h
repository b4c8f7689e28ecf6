// strlen, strcmp, strncmp's prefix test and strrchr, for the shim's few
// short strings (names, paths, settings): written out rather than imported,
// as each import is a symbol lookup at every exec under the shim
// (libc_functions.h).
#ifndef HEAPWATCH_PRELOAD_TEXT_H_
#define HEAPWATCH_PRELOAD_TEXT_H_

#include <stddef.h>

namespace heapwatch::preload {

inline size_t Length(const char* s) {
  size_t n = 0;
  // GCC turns the plain loop back into a call of strlen (its loop
  // distribution): the empty asm keeps it a loop.
  while (s[n]) {
    ++n;
    __asm__("" : "+r"(n));
  }
  return n;
}

inline bool Equal(const char* a, const char* b) {
  for (; *a == *b; ++a, ++b) {
    if (!*a) return true;
  }
  return false;
}

// Whether `s` starts with `prefix`.
inline bool StartsWith(const char* s, const char* prefix) {
  for (; *prefix; ++s, ++prefix) {
    if (*s != *prefix) return false;
  }
  return true;
}

// The last `c` in `s`, or nullptr.
inline const char* LastOf(const char* s, char c) {
  const char* last = nullptr;
  for (; *s; ++s) {
    if (*s == c) last = s;
  }
  return last;
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_TEXT_H_
