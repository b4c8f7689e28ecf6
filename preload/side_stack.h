// A stack of the shim's own for libunwind, for samples taken where the host's
// stack may be short. libunwind needs ~5-8 KiB below the caller of malloc (its
// cursor and context, its DWARF state, ld.so's lazy binding saving the vector
// registers), more than the allocator itself ever does. On a thread's own
// stack with room left that is nothing; but a coroutine or fiber on a 16 KiB
// stack (folly's default), a signal handler on an alternate stack of
// SIGSTKSZ, or a thread created with PTHREAD_STACK_MIN, may have less, and
// the host died of SIGSEGV in its guard page where without the shim it ran
// (tests/e2e/test_shim_api.py, SmallStackTest).
//
// RunOnSideStack switches the stack pointer to this thread's side stack
// (64 KiB over a PROT_NONE guard page, mapped at the thread's first need and
// unmapped when it exits) and calls fn there. The switch keeps a frame
// pointer frame on the host's stack whose unwind rule is rbp-based, so
// libunwind, debuggers and crash handlers unwind from the side stack back
// into the host's frames as through any frame-pointer function.
// x86-64 only, like the shim.
#ifndef HEAPWATCH_PRELOAD_SIDE_STACK_H_
#define HEAPWATCH_PRELOAD_SIDE_STACK_H_

#include <stdint.h>

namespace heapwatch::preload {

using StackFunction = uint32_t (*)(void** out, uint32_t max);

inline constexpr uintptr_t kSideStackBytes = 64 * 1024;

// fn(out, max) on the side stack; 0 without calling it if the side stack
// cannot be mapped. Not re-entrant (the recording guard is held).
uint32_t RunOnSideStack(StackFunction fn, void** out, uint32_t max);

// fn(out, max) on a stack all threads share, each for a moment: 0 without
// calling it if another thread is using it (or it cannot be mapped). Mapped
// once and kept, where a side stack of a thread's own costs the thread a
// mapping, its page faults and, if it is dropped, an unmapping (~45 us on
// the development VM). A thread's first sample finds its stack's bounds
// there (unwinder.cc, LearnStack).
uint32_t RunOnSharedStack(StackFunction fn, void** out, uint32_t max);

// In a forked child: frees the shared stack if another thread of the parent
// held it (that thread is not in the child, and every first capture would
// have had to map a side stack of its own).
void SideStackForkChild();

// Gives the shared stack back if this thread's RunOnSharedStack never
// returned (a signal handler jumped out of the call: unwinder.h,
// UnwinderAbandoned).
void LeaveSharedStack();

// Whether `address` lies on this thread's side stack (tests).
bool OnSideStack(uintptr_t address);

// Unmaps this thread's side stack; the next RunOnSideStack maps it again.
void DropSideStack();

// At the thread's exit: unmaps the side stack, and RunOnSideStack maps none
// again (it returns 0).
void ReleaseSideStack();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_SIDE_STACK_H_
