// dlclose, interposed: moves the unload epoch (modules.h) around the real
// one, so that stacks captured before and after an object is unmapped get
// different ids even when their pcs are the same numbers (another object
// mapped where the first one was), and the collector can tell which module
// map names them. dlopen is left alone: loading reuses no address (and
// glibc's dlopen resolves names from its caller's RUNPATH, which a wrapper
// would replace with the shim's).
#include <dlfcn.h>

#include <atomic>

#include "modules.h"
#include "next_function.h"
#include "unloaded_code.h"

#define HW_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using DlcloseFn = int (*)(void*);
std::atomic<DlcloseFn> g_real_dlclose{nullptr};

}  // namespace

// Why the epoch moves both before and after the real dlclose. A stack's own
// pcs are return addresses of frames still running, so its objects cannot be
// unmapped while it is captured and hashed (short of a program that unloads
// code another thread is running): only stacks on either side of an unload
// must differ. The unmapping happens inside the real dlclose, between the two
// moves:
//  - before: a stack of the object mapped afterwards in the same place is
//    captured after that object's dlopen, which takes the loader's lock
//    after this dlclose released it, so after this move: it reads a later
//    epoch than any stack captured before the dlclose began. Without it, a
//    dlopen in another thread between the real dlclose's return and the
//    move after would read the old epoch.
//  - after: the object's own destructors run inside the real dlclose and may
//    allocate; their stacks read the epoch of the move before. The move
//    after gives what comes next an epoch of its own.
// RecordAlloc reads the epoch after the unwind; by the above either order
// gives the same answer. The sender sees the epoch move (its fingerprint of
// the mappings includes it) and sends a map stamped with it (modules.h).
//
// And the code it unmapped stays free of new code while libunwind's trace
// caches may still describe it (unloaded_code.h).
HW_EXPORT int dlclose(void* handle) {
  DlcloseFn real = heapwatch::preload::NextFunction(&g_real_dlclose, "dlclose");
  if (!real) return -1;
  heapwatch::preload::CodeSnapshot snapshot;
  heapwatch::preload::SnapshotCode(&snapshot);
  heapwatch::preload::NoteUnload();
  int rc = real(handle);
  heapwatch::preload::NoteUnload();
  heapwatch::preload::KeepUnloadedCodeAway(&snapshot);
  return rc;
}
