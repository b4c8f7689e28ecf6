// The loader's locks as a forked child finds them.
//
// dl_iterate_phdr, dlopen and dlclose take the loader's list lock
// (dl_load_write_lock). glibc (2.36 here) does not reset it in a forked
// child: a child forked while another thread held it (that thread's dlopen or
// dlclose) waits for it for good at its first dl_iterate_phdr. A scratch
// program with no shim, whose children call dl_iterate_phdr, beside a
// dlopen/dlclose loop: a child hung within 15 s. The shim calls it in every
// child that samples (libunwind's unwinds and load; then also the sender's
// module lists and its dlopen of libunwind, which held the loader's main
// lock, on which the child's exit() waited), so such a child, which alone would run
// on, hung under the shim. Now it is not profiled (recorder.cc,
// StartSenderAtFirstSample; recorder_fork.cc, AdoptCopy).
#ifndef HEAPWATCH_PRELOAD_LOADER_LOCK_H_
#define HEAPWATCH_PRELOAD_LOADER_LOCK_H_

#include <stddef.h>

namespace heapwatch::preload {

// Whether one of the loader's recursive locks (in its globals,
// `_rtld_global`, whose layout is not public: any pthread_mutex_t there) is
// held by a thread that is not in this process: in a child, one of its
// parent's. Reads the loader's globals only, and asks the kernel about an
// owner only for a lock that is held (tgkill with signal 0).
bool LoaderLockHeldByGhost();

// The loader's globals, or nullptr (real_allocator.cc finds them in its walk
// over the loaded objects at start).
const void* LoaderGlobals(size_t* size);

// Whether glibc knows one thread in this process (its
// __libc_single_threaded, 2.32 and later; false where there is none). Once
// a thread is created it stays false, also after that thread is gone.
bool GlibcSingleThreaded();

// Whether one of the loader's recursive locks is held (by anyone: in a
// process glibc knows one thread in, by the caller, inside dlopen or a
// dl_iterate_phdr callback). True where the globals are not known.
bool LoaderLockHeld();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_LOADER_LOCK_H_
