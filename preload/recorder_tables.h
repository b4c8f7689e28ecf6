// What a process that samples maps, and when: the live table, the stack
// depot and the event ring at its first sample (MapTables), within what its
// RLIMIT_AS leaves (AddressSpaceAllows). Internal to the recorder
// (recorder.cc).
#ifndef HEAPWATCH_PRELOAD_RECORDER_TABLES_H_
#define HEAPWATCH_PRELOAD_RECORDER_TABLES_H_

#include "config.h"

namespace heapwatch::preload {

// Under a finite RLIMIT_AS, whatever the shim maps comes out of what the
// application may map: a program that ran near its limit failed under the
// shim (python3 under `ulimit -v 60000`: MemoryError). So the shim profiles
// only where what it may take is at most a tenth of the limit, and otherwise
// says so once and stays out of the way. Checked at start, at the first
// sample before the tables are mapped (a program may lower its limit in
// between), and at a forked child's first sample, whose tables are its
// parent's but whose sender is its own.
bool AddressSpaceAllows(const Config& c);

// While another thread maps the tables (MapTables: a few system calls), waits
// for it, a second at most; `state` is the state last read. The state then.
int WaitForTables(int state);

// The live table (unless the bootstrap arena's pins needed it at start), the
// stack depot and the event ring, mapped at the process's first sample:
// ~7 system calls and ~4 mappings, which a process that never samples (most
// that a shell or a probe runs) no longer makes, and its exit no longer
// unmaps. One thread maps them; another that samples meanwhile waits for it
// (a few system calls), or, should it take over a second, drops its sample.
// False if they cannot be mapped, or the address space limit (checked again
// here: the program may have lowered it since its start) leaves no room: the
// shim is then off.
bool MapTables();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_RECORDER_TABLES_H_
