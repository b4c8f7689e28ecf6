// Module maps for out-of-process symbolization: for each loaded object its
// path, load bias, executable range, file offset and GNU build-id, encoded as
// kModulesReset + kModule frames, written by the threads that sample (they
// may call into the loader) and published for the sender (which must not:
// sender.h).
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

// The published map. A sampling thread that finds the stack depot grown
// (a stack never seen before: its pcs may lie in an object the last map
// does not list) writes a new map if objects were loaded or unloaded since
// that map (ModulesGeneration), before it pushes the stack's event; the
// sender sends each map it finds published. One writer at a time, for at
// most kForkWaitNs (a writer that never ends is a thread a copy of the
// process does not have: the map stays as it is).
extern std::atomic<uint64_t> g_modules_checked_stacks __attribute__((visibility("hidden")));
bool PublishModules(uint64_t stacks);
inline void PublishModulesIfStacksGrew(uint64_t stacks) {
  if (__builtin_expect(stacks != g_modules_checked_stacks.load(std::memory_order_relaxed), 0)) {
    PublishModules(stacks);
  }
}
// Changes whenever a map is published; 0 until the first.
uint64_t PublishedModulesSequence();
// Copies the published map (at most `capacity` bytes, kModulesReset
// first) into `out` and returns its size, with its sequence in *sequence; 0
// if none is published yet or a writer held it throughout (the next round
// tries again). Never calls into the loader or the C library.
size_t CopyPublishedModules(uint8_t* out, size_t capacity, uint64_t* sequence);
// In a forked child: the writer, if one was writing, was another thread.
void ModulesForkChild();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_MODULES_H_
