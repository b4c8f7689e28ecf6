// Stack capture for sampled allocations: libunwind's unw_backtrace (local
// unwinding only, per-thread cache) or, with HEAPWATCH_UNWIND=fp, a frame
// pointer walk (only trustworthy for code built with -fno-omit-frame-pointer).
//
// Frames inside the shim itself are skipped, so pcs[0] is the return address
// into the caller of malloc (or into the C++ runtime's operator new).
// Called on the recording path with the re-entrancy guard held: libunwind may
// allocate, and those allocations pass through unsampled.
#ifndef HEAPWATCH_PRELOAD_UNWINDER_H_
#define HEAPWATCH_PRELOAD_UNWINDER_H_

#include <stdint.h>

namespace heapwatch::preload {

// Once, before the first capture. [skip_start, skip_end) is the shim's code.
void InitUnwinder(bool frame_pointers, uintptr_t skip_start, uintptr_t skip_end);

// Fills at most `max` pcs (innermost first); returns the depth (0 = failed).
uint32_t CaptureStack(uint64_t* pcs, uint32_t max);

// The executable range of the object containing this code (the shim), found
// from its own ELF headers without taking the loader's lock.
void SelfCodeRange(uintptr_t* start, uintptr_t* end);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_UNWINDER_H_
