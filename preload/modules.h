// Module maps for out-of-process symbolization: for each loaded object its
// path, load bias, executable range, file offset and GNU build-id, encoded as
// kModulesReset + kModule frames. Runs on the sender thread only.
#ifndef HEAPWATCH_PRELOAD_MODULES_H_
#define HEAPWATCH_PRELOAD_MODULES_H_

#include <stdint.h>

#include "frame_writer.h"

namespace heapwatch::preload {

// A number that changes whenever objects are loaded or unloaded
// (dlpi_adds + dlpi_subs). Cheap: visits one object.
uint64_t ModulesGeneration();

// Appends kModulesReset and one kModule per object with executable code
// (the vdso, which has no file, is skipped). The main executable's empty
// name becomes `exe_path`. Returns the number of modules written; objects
// that do not fit in `out` are left out.
uint32_t WriteModules(FrameWriter* out, const char* exe_path);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_MODULES_H_
