// C23's sized frees, free_sized and free_aligned_sized (glibc 2.43; newer
// jemalloc has its own, which a program built against glibc 2.43 binds to
// when jemalloc is preloaded after the shim), looked up at run time: this
// machine's glibc may predate them, and the shim has them.
// Allocates ten marker blocks: for even k, 6,000,000 + k bytes from malloc,
// freed with free_sized; for odd k, 6,000,000 + 64 k bytes (a multiple of
// the alignment) from aligned_alloc(64), freed with free_aligned_sized. A
// block of 6,000,010 bytes stays live.
//   shim_sized_free: exits 2 if either is missing.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

constexpr size_t kMarkerBase = 6000000;

using FreeSized = void (*)(void*, size_t);
using FreeAlignedSized = void (*)(void*, size_t, size_t);

void* g_kept = nullptr;

}  // namespace

int main() {
  auto free_sized = reinterpret_cast<FreeSized>(dlsym(RTLD_DEFAULT, "free_sized"));
  auto free_aligned_sized = reinterpret_cast<FreeAlignedSized>(dlsym(RTLD_DEFAULT, "free_aligned_sized"));
  if (!free_sized || !free_aligned_sized) {
    printf("free_sized or free_aligned_sized missing\n");
    return 2;
  }
  size_t sum = 0;
  for (size_t k = 0; k < 10; ++k) {
    if (k % 2 == 0) {
      size_t size = kMarkerBase + k;
      auto* p = static_cast<unsigned char*>(malloc(size));
      if (!p) return 1;
      p[size - 1] = static_cast<unsigned char>(k);
      sum += p[size - 1];
      free_sized(p, size);
    } else {
      size_t size = kMarkerBase + 64 * k;
      auto* p = static_cast<unsigned char*>(aligned_alloc(64, size));
      if (!p) return 1;
      p[0] = static_cast<unsigned char>(k);
      sum += p[0];
      free_aligned_sized(p, 64, size);
    }
  }
  g_kept = malloc(kMarkerBase + 10);
  printf("freed 10 blocks, sum %zu, kept %d\n", sum, g_kept != nullptr);
  return 0;
}
