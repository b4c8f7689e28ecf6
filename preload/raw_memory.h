// Page-granular memory for the shim's own tables, straight from mmap so that
// nothing the shim keeps ever touches the allocator it interposes.
#ifndef HEAPWATCH_PRELOAD_RAW_MEMORY_H_
#define HEAPWATCH_PRELOAD_RAW_MEMORY_H_

#include <stddef.h>

// For a large zero-initialised array: placed after every other one (.lbss
// follows .bss), so that the small globals that the start and each fork
// write share as few pages as may be, each page one fault of every process
// and every forked child (real_allocator.cc's bootstrap arena, the unwinder's
// slots).
#if defined(__x86_64__)
#define HEAPWATCH_LARGE_ZEROED __attribute__((section(".lbss.heapwatch")))
#else
#define HEAPWATCH_LARGE_ZEROED
#endif

// For the functions a forked child's handler runs (ForkChild and what it
// calls): placed together (the linker sorts .text.sorted.* by name into one
// run), so that a child faults in one 64 KiB window of the shim's code (the
// kernel maps the pages around a fault, within an aligned 64 KiB), not two:
// spread over 37 KiB of the shim, they crossed such a boundary in more than
// half of the places the shim's code may be loaded at, one page fault more
// in every forked child there.
#define HEAPWATCH_FORK_CHILD_CODE __attribute__((section(".text.sorted.heapwatch_fork_child")))

namespace heapwatch::preload {

// x86-64's page (the shim's only target: libunwind's _ULx86_64 entry
// points). A constant, not getpagesize() or sysconf(): each import is a
// symbol lookup at every exec (libc_functions.h).
inline constexpr size_t kPageBytes = 4096;

// Zero-filled, private, MAP_NORESERVE memory (untouched pages cost nothing).
// Returns nullptr on failure. Never uses the heap; safe inside malloc.
void* MapZeroed(size_t bytes);
void Unmap(void* p, size_t bytes);
// Address space only: `bytes` of PROT_NONE memory, which holds no page, is
// not charged against the commit limit (strict overcommit) and is skipped by
// mlockall's populating; CommitPages makes a part of it usable (zeroed, read
// and write). Free with Unmap. nullptr / false on failure.
void* MapReserved(size_t bytes);
bool CommitPages(void* p, size_t bytes);
// Like MapZeroed, for memory that will be touched all over at random: aligned
// to 2 MiB and advised as transparent huge pages (MADV_HUGEPAGE), so that each
// 2 MiB costs one page fault instead of 512 (~12 us each on the development
// VM) and one TLB entry. Where huge pages are off the advice is ignored.
// `bytes` must be a multiple of kHugePageBytes. Free with Unmap.
inline constexpr size_t kHugePageBytes = size_t{2} << 20;
void* MapZeroedHuge(size_t bytes);
// Makes memory from MapZeroed read as zeros again and gives its pages back
// (MADV_DONTNEED; nothing is copied, also after fork). False on failure.
bool DiscardPages(void* p, size_t bytes);
// Advises [p, p + bytes) MADV_WIPEONFORK (Linux 4.14): a forked child gets
// it as zero pages, and fork copies none of its page table entries (nor
// makes the parent's pages copy-on-write). False where the kernel lacks it.
bool WipeOnFork(void* p, size_t bytes);
// MapZeroed, advised so where the kernel can: for what a forked child never
// reads before it starts over (the sender's buffers and its set of stacks
// sent, which the child's first connection clears), so that fork need not
// copy the pages the parent touched.
void* MapZeroedWipedOnFork(size_t bytes);
// Maps every page of [p, p + bytes) writable now, in one call
// (MADV_POPULATE_WRITE, Linux 5.14), instead of a page fault at each page's
// first touch. Pages already mapped keep their contents. False where the
// kernel lacks it; the pages then fault in as before.
bool PrefaultPages(void* p, size_t bytes);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_RAW_MEMORY_H_
