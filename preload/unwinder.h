// Stack capture for sampled allocations: libunwind (local unwinding only)
// or, with HEAPWATCH_UNWIND=fp, a frame pointer walk (only trustworthy for
// code built with -fno-omit-frame-pointer; the shim itself is). The walk
// reads only this thread's stack (pthread_getattr_np, once a thread) and ends
// at the first frame without a plausible frame pointer; where it cannot
// start (an unknown stack, an alternate signal stack, a coroutine's)
// libunwind unwinds.
// It costs a few ns a frame, and nothing outside the stack: libunwind's walk
// reads one trace cache entry a frame, and in a program that streams memory
// through the caches between samples those are misses one after the other
// (BENCHMARKS.md, "Samples: what one costs, and frame pointers").
//
// libunwind's fast unw_backtrace keeps a trace cache per thread: 256 KiB,
// mapped and written whole at the thread's first unwind (64 page faults) and
// freed at its exit. A service with 200 threads that allocate would carry
// 50 MiB of them, against a memory limit the shim is there to watch. Without
// the cache, unw_step is ~300x slower a sample (~40 us against ~0.13 us for
// 16 frames on the development VM, most of it libunwind's signal masking:
// Debian's libunwind has no per-thread register-state cache (its TLS is 16
// bytes), so UNW_CACHE_PER_THREAD falls back to the global cache, locked
// with all signals masked around each frame; strace counts 14 rt_sigprocmask
// calls a stepped sample on the malloc loop).
// So a thread steps for its first samples and takes a trace cache at its
// 16th sample, if fewer than HEAPWATCH_UNWIND_CACHES threads (default 32:
// 8 MiB; no cap below R = 64 KiB, config.cc) hold one, trying again every
// 16 samples; it gives the cache back when it exits. A thread that samples
// rarely never costs 256 KiB, and the caches go to the threads that sample
// most. bench/shim/run_threads.sh: 64 threads, RSS and CPU with and without
// caches.
//
// Stack: a capture takes ~(max + 16) x 8 bytes of the host's stack for its
// pcs and a few frames. libunwind (~5-8 KiB) runs there only on the thread's
// own stack with room left, else on the side stack (side_stack.h;
// preload/README, "Known limits").
//
// Frames inside the shim itself are skipped, so pcs[0] is the return address
// into the caller of malloc (or into the C++ runtime's operator new).
// Called on the recording path with the re-entrancy guard held: libunwind may
// allocate, and those allocations pass through unsampled.
#ifndef HEAPWATCH_PRELOAD_UNWINDER_H_
#define HEAPWATCH_PRELOAD_UNWINDER_H_

#include <stdint.h>

namespace heapwatch::preload {

// Once, before the first capture. [skip_start, skip_end) is the shim's code;
// `trace_caches` threads at a time may use unw_backtrace (see above).
// libunwind itself is loaded later (LoadUnwinder); until it is, only the
// frame pointer walk (HEAPWATCH_UNWIND=fp) captures.
void InitUnwinder(bool frame_pointers, uintptr_t skip_start, uintptr_t skip_end,
                  uint32_t trace_caches);

// Loads libunwind.so.8 (dlopen: libunwind_loader.h says why), once for the
// process: at a sample until it is loaded (recorder.cc,
// LoadUnwinderAtSample: by the sampling thread where it is the process's only
// one and not inside the loader, else by a thread of its own), and the calls
// that may take the files away do it before (recorder.h, LoadUnwinderNow).
// True once loaded. If this call's load fails, *error is dlerror()'s
// message; a load another thread has under way is waited for (a second at
// most), and its failure leaves *error alone. Not from inside malloc in a
// process with threads: a dlopen there may wait for the loader's lock while
// holding one of the application's, which the lock's holder may wait for.
bool LoadUnwinder(const char** error);
// Whether libunwind is loaded, or known not to be loadable here. A
// LoadUnwinder that waited a second for another thread's load (or a fork's)
// leaves neither: the loader tries again (recorder.cc).
bool UnwinderLoadSettled();
// Whether thread `tid` of this process sleeps (state S in
// /proc/self/task/TID/stat: waiting for a lock, a futex, a socket; not
// reading from disk, which is D). False where it cannot be told (no /proc,
// no such thread). Used by a capture that waits for libunwind's load.
bool ThreadSleeps(uint32_t tid);
// A thread that loads libunwind has been started: captures wait for it while
// it runs, 250 ms at most in all. Not while it sleeps: a capture inside an
// application's dlopen holds the loader's lock that the loader's dlopen
// waits for; it keeps the allocation's call site alone, as do the others
// until the application's dlopen returns (unwinder_load.cc, LibunwindReady).
void ExpectUnwinder();

// fork's prepare handler: waits until no other thread is inside libunwind,
// and until UnwinderForkParent (or the child's UnwinderForkChild) no thread
// enters it; a sample taken meanwhile gets no stack (an unwind failure).
// Why: a child inherits every lock as it was at the fork, and nobody will
// release the ones threads of the parent held. An unwind holds two for much
// of its time (all of it, stepping): libunwind's global cache lock, taken
// with every signal blocked, and glibc's dl_iterate_phdr lock, which glibc
// 2.36's fork does not reset. A child forked meanwhile hung at its first
// sample. (A lock the application itself holds at the fork, in its own
// dl_iterate_phdr, can still hang a child that unwinds; glibc's problem, and
// the application's child would hang on it too at its first use.)
// It also waits for a load of libunwind under way (LoadUnwinder): a child
// born halfway through that dlopen would have the parent's half-made loader
// state (glibc's fork resets the loader's lock in the child, not what it
// guards).
void UnwinderForkPrepare();
// True if the child was born while another thread's unwind was still marked
// under way (below).
bool UnwinderForkParent();
// The wait is bounded (unwinder.cc, kForkWaitNs): a thread that a signal
// handler took out of an unwind for good left its mark up (before the
// sample's cleanup, recorder.cc; still where a jump runs none), and fork
// used to wait for it forever.
// In a forked child: only the calling thread survives, with its cache (and
// its place among the threads that unwind) if it had one. True if the child
// was born while another thread's unwind (or libunwind's load) was still
// marked under way: it does not use libunwind (its samples keep only their
// call site, or with HEAPWATCH_UNWIND=fp the frame pointer walk's stack).
bool UnwinderForkChild();
// In a copy of the process made without fork()'s handlers (recorder_fork.cc,
// AdoptCopy), before UnwinderForkChild: no prepare handler waited, so the
// marks are as the parent's other threads left them at the copy, and any
// one up (theirs, or one a fork gave up on) makes the child go without
// libunwind, as a fork does.
void UnwinderCopyMade();

// Whether `address` lies on this thread's own stack (known from its first
// capture on).
bool OnOwnStack(uintptr_t address);
// This thread left a capture halfway for good (recorder.cc,
// AbandonSample): takes down its mark inside libunwind (and stops using its
// trace cache if that was under way), and gives back the shared stack if it
// held it.
void UnwinderAbandoned();

// Whether this thread is inside a libunwind call the shim made (pipe2's
// interposer moves the pipe libunwind opens then: descriptors.h).
bool InsideLibunwind();

// Around a call of pthread_getattr_np (getattr_interposer.cc says why): a
// capture in between does not call it to learn the thread's stack, and
// unwinds on the side stack.
void EnterThreadAttributes();
void LeaveThreadAttributes();

// Threads holding a trace cache now (tests).
uint32_t TraceCachesInUse();

// Trace caches and unloaded code. libunwind keys a thread's trace cache by
// pc alone and has no way to empty it (unw_flush_cache does not reach it).
// Once dlclose has unmapped an object, an entry for one of its pcs describes
// a frame that is gone; if other code is later mapped there and a stack
// passes through that pc, unw_backtrace computes the caller's frame with the
// old rule, and with a frame pointer rule reads wherever rbp points: the
// host died of SIGSEGV (tests/e2e/test_shim_modules.py, StaleTraceCacheTest).
// So dlclose keeps the addresses of unmapped code from taking new code
// (dl_interposer.cc), and where it cannot, retires the caches.
//
// Whether threads may take trace caches at all (false before InitUnwinder
// and with HEAPWATCH_UNWIND_CACHES=0).
bool TraceCachesEnabled();
// dlclose unmapped code: drops what libunwind's global caches hold
// (unw_flush_cache), which the stepping unwinds read.
void ForgetUnmappedCode();
// Every thread that took its trace cache before this call stops using it
// and steps from then on (its cache stays allocated until it exits and is
// still counted against HEAPWATCH_UNWIND_CACHES). Threads that take a cache
// later use it.
void RetireTraceCaches();
// Threads retired so far (tests).
uint32_t TraceCachesRetired();

// Fills at most `max` pcs (innermost first); returns the depth (0 = failed).
uint32_t CaptureStack(uint64_t* pcs, uint32_t max);

// The executable range of the object containing this code (the shim), found
// from its own ELF headers without taking the loader's lock.
void SelfCodeRange(uintptr_t* start, uintptr_t* end);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_UNWINDER_H_
