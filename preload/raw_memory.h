// Page-granular memory for the shim's own tables, straight from mmap so that
// nothing the shim keeps ever touches the allocator it interposes.
#ifndef HEAPWATCH_PRELOAD_RAW_MEMORY_H_
#define HEAPWATCH_PRELOAD_RAW_MEMORY_H_

#include <stddef.h>

namespace heapwatch::preload {

// Zero-filled, private, MAP_NORESERVE memory (untouched pages cost nothing).
// Returns nullptr on failure. Never uses the heap; safe inside malloc.
void* MapZeroed(size_t bytes);
void Unmap(void* p, size_t bytes);
// Makes memory from MapZeroed read as zeros again and gives its pages back
// (MADV_DONTNEED; nothing is copied, also after fork). False on failure.
bool DiscardPages(void* p, size_t bytes);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_RAW_MEMORY_H_
