// A process's copies, and what a process notes of itself: fork()'s handlers
// (ForkPrepare, ForkParent, ForkChild), copies made without them (the copy
// token, AdoptCopy), and the pid and start time a process's handshake
// carries (NoteProcessStart). Internal to the recorder (recorder.cc).
#ifndef HEAPWATCH_PRELOAD_RECORDER_FORK_H_
#define HEAPWATCH_PRELOAD_RECORDER_FORK_H_

#include <stdint.h>

#include <atomic>

namespace heapwatch::preload {

// Copies of the process made without fork()'s handlers: _Fork(), or clone()
// without CLONE_VM (a sandbox's or a container runtime's child). ForkChild
// never ran there: the sender, its connection and the events in flight are
// the parent's, and the child has no sender. Its samples filled a ring that
// nobody drained, and its exit() waited a second for a flush that never
// came (FlushSenderAtExit). The token is a word in a page advised
// MADV_WIPEONFORK, which the kernel gives every such copy as zeros (and a
// vfork child, which shares the page, as it is): RecordAlloc reads it at
// each sample, one load of a line nothing writes. A child of fork() has it
// wiped too; its first sample sets it again (AdoptCopy finds that
// ForkChild ran). Where the kernel lacks the advice (before Linux 4.14) the
// token is a static word that always reads set: no copy is ever adopted.
inline constexpr uint64_t kCopyToken = 0x68656170'77617463;  // "heapwatc"
extern std::atomic<uint64_t>* g_copy_token;
// At start, once the shim is on.
void ArmCopyToken();
inline bool IsUnadoptedCopy() {
  return __builtin_expect(g_copy_token->load(std::memory_order_relaxed) != kCopyToken, 0);
}
// What an unadopted copy decides at its first sample or fork (recorder_fork.cc).
// True if it samples on.
bool AdoptCopy();

// The threads of this process; -1 if they cannot be read.
int CountThreads();

// The process's pid and start time, for its handshake: at start, and in
// each child.
void NoteProcessStart();

// fork()'s handlers (__register_atfork, at start).
void ForkPrepare();
void ForkParent();
void ForkChild();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_RECORDER_FORK_H_
