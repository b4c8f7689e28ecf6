// dlopen, dlsym and dlerror, for the shim's own calls.
//
// Before glibc 2.34 these lived in libdl.so.2 (and pthread_create and its
// kin in libpthread.so.0). The shim used to name both as DT_NEEDED, for old
// images; since 2.34 they are empty stubs, and loading them cost every exec
// under the shim ~40 system calls (a search of the shim's DT_RPATH, then two
// opens and their mappings): fork + exec of /bin/true 1.38x -> 1.18x of no
// shim with the shim disabled (BENCHMARKS.md, "Fourteenth session").
//
// So the shim names neither, and finds what they held in the objects loaded
// at start (libc_functions.h): on glibc 2.34 and later libc.so.6 has all of
// it; before, they are found where the program loads those libraries
// itself, and are null where it does not. These three calls then go through
// libdl.so.2 loaded by hand, with glibc's own private loader calls (libc.so.6
// exports __libc_dlopen_mode and __libc_dlsym from 2.3 to 2.33; frozen
// there, and found the same way). Without libpthread the shim is off
// (MissingThreadFunction).
#ifndef HEAPWATCH_PRELOAD_DL_FUNCTIONS_H_
#define HEAPWATCH_PRELOAD_DL_FUNCTIONS_H_

namespace heapwatch::preload {

// As dlopen, dlsym and dlerror; with RTLD_NEXT, DlSym finds the next
// definition after the shim. Null (and DlError a message) where libdl cannot
// be reached at all.
void* DlOpen(const char* name, int flags);
void* DlSym(void* handle, const char* name);
const char* DlError();

// The first of the libpthread.so.0 functions the shim needs to profile that
// the process lacks (glibc before 2.34, a program that does not load
// libpthread), or nullptr.
const char* MissingThreadFunction();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_DL_FUNCTIONS_H_
