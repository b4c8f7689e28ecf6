// Module maps for out-of-process symbolization: for each loaded object its
// path, load bias, executable range, file offset and GNU build-id, encoded as
// kModulesReset + kModule frames. Runs on the sender thread only.
//
// And the unload epoch (wire.h), which any thread may read or move.
#ifndef HEAPWATCH_PRELOAD_MODULES_H_
#define HEAPWATCH_PRELOAD_MODULES_H_

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

// A number that changes whenever objects are loaded or unloaded
// (dlpi_adds, dlpi_subs) and whenever the unload epoch moves (a dlclose
// that left its object loaded still needs a map of the new epoch). Cheap:
// visits one object.
uint64_t ModulesGeneration();

// Appends kModulesReset and one kModule per object with executable code
// (the vdso, which has no file, is skipped), stamped with the unload epoch.
// The main executable's empty name becomes `exe_path`. Returns the number
// of modules written; objects that do not fit in `out` are left out.
uint32_t WriteModules(FrameWriter* out, const char* exe_path);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_MODULES_H_
