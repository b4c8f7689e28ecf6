// Module maps for out-of-process symbolization: for each loaded object its
// path, load bias, executable range, file offset and GNU build-id, encoded as
// kModulesReset + kModule frames. Read by the sender, which must not call
// into the loader or the C library (sender.cc): from the kernel's list of the
// process's mappings (/proc/self/maps) and each object's ELF headers in
// memory, read with process_vm_readv, which fails instead of faulting where
// a dlclose unmapped them meanwhile. What out-of-process profilers read too.
// Where there is no /proc (a chroot into an image without it), from the
// loader's own list of objects, read through its debugger interface
// (_r_debug) the same way.
//
// And the unload epoch (wire.h), which any thread may read or move.
#ifndef HEAPWATCH_PRELOAD_MODULES_H_
#define HEAPWATCH_PRELOAD_MODULES_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "frame_writer.h"

namespace heapwatch::preload {

// The unload epoch: moves on every dlclose, before and after the real one
// (dl_interposer.cc says why). Stack ids carry it (StackId) and module maps
// are stamped with it, so that the collector names a stack's pcs after the
// objects mapped when it was captured, even once another object has taken
// their addresses. Reading it is one load: it is on the sampled path.
extern std::atomic<uint64_t> g_unload_epoch __attribute__((visibility("hidden")));
inline uint64_t UnloadEpoch() { return g_unload_epoch.load(std::memory_order_acquire); }
inline void NoteUnload() { g_unload_epoch.fetch_add(1, std::memory_order_acq_rel); }

// From the start's walk over the loaded objects (real_allocator.cc): the
// main program's program headers, and the loader's debugger interface.
void NoteMainProgram(const void* phdrs, int count);
void NoteLoaderDebug(const void* r_debug);

// Before a call that may take /proc out of the process's reach (chroot, a
// mount namespace, a Landlock ruleset: recorder.h,
// LoadUnwinderBeforeLeavingFiles): opens /proc/self/maps and keeps the
// descriptor (descriptors.h), which the sender reads where it can no longer
// open the file. Only this process's ("self" is the opener: a forked
// child's copy would read its parent's mappings).
void KeepMappingsReadable();

// A hash of the process's file-backed executable mappings (address range,
// file offset, inode) and of the unload epoch: it changes when an object is
// loaded or unloaded, and when a dlclose that left its object loaded moved
// the epoch (a map of the new epoch is still needed). One read of
// /proc/self/maps; 0 if it cannot be read.
uint64_t MappingsFingerprint();

// Appends kModulesReset and one kModule per ELF object with executable code
// mapped from a file (the vdso is skipped), stamped with the unload epoch,
// and returns how many; objects that do not fit in `out` are left out.
// *fingerprint gets MappingsFingerprint() of the mappings it read.
uint32_t WriteModules(FrameWriter* out, uint64_t* fingerprint);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_MODULES_H_
