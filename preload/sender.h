// The sender thread: drains the event ring into the collector's Unix socket.
//
// One thread per process, started at the process's first sample (also in a
// forked child or an adopted copy; again after the calls that need the
// process to have one thread or change its credentials: PauseSender), with
// every signal blocked for its whole life. A task made with clone(), not a
// thread of glibc's: it never calls into glibc, so it allocates nothing and
// nothing it does is sampled (sender.cc says why). It never blocks the
// application: its socket writes are nonblocking with a bounded buffer, it
// waits on its own socket only, and when the collector is absent or stuck the
// ring fills and producers drop (and count) events instead of waiting.
//
// Connection: kHello, module map, full resync; then batched events, stacks on
// first use, module map again when objects are loaded or unloaded, kStats
// about once a second. On error it reconnects with backoff capped at 500 ms.
#ifndef HEAPWATCH_PRELOAD_SENDER_H_
#define HEAPWATCH_PRELOAD_SENDER_H_

#include <stdint.h>

namespace heapwatch::preload {

// Starts the thread. False if it could not be created.
bool StartSender();
// The address space StartSender maps: the sender's buffers, its set of
// stacks sent, and its task's memory (stack, guard page, thread area).
uint64_t SenderAddressSpace();

// Ends the sender thread after its round and waits until it is gone; its
// connection and state stay for the next one. For a call that needs the
// process to have one thread (namespace_interposer.cc). False if this
// process has no sender running.
bool PauseSender();
// Starts it again after PauseSender (the process goes off if it cannot).
void ResumeSender();
// Held around PauseSender ... ResumeSender, by StopSender and by
// SenderFollowCredentials: one at a time (two threads would wait for the
// same task's end, or start two).
class SenderPauseScope {
 public:
  SenderPauseScope();
  ~SenderPauseScope();
  SenderPauseScope(const SenderPauseScope&) = delete;
  SenderPauseScope& operator=(const SenderPauseScope&) = delete;
};

// After the calling thread changed its credentials (setuid and its kin:
// namespace_interposer.cc) with the system call `number` and these
// arguments, which glibc's wrapper made: makes the sender make the same
// call, and waits until it has. glibc makes every thread of its own do so
// (its setxid signal); the sender is none of them, and would keep the old
// credentials: root's, in a daemon that dropped them. If the sender does
// not follow within a second, or its call fails (its credentials were not
// the caller's before: a change made with the `syscall` instruction), it is
// stopped and started again, from this thread, with this thread's.
void SenderFollowCredentials(long number, long a, long b, long c);
// The sender's side: makes a credential call a thread waits for, if any.
// Where the sender may wait: between rounds, and in a flush (Flush).
void FollowCredentialsNow();

// Wakes the sender now if it is sleeping between rounds (any thread, also a
// signal handler: one atomic load, and a futex wake only when it sleeps).
void NudgeSender();

// Gives the sender a moment to deliver what the process recorded, when the
// process exits (library destructor). Waits at most `timeout_ms`, and only if
// the sender is connected or has not yet tried to connect, and is this
// process's: not in a copy made without fork()'s handlers (_Fork, clone
// without CLONE_VM, vfork), which has no sender of its own until the
// recorder adopts it (recorder_fork.cc, AdoptCopy). Such a child's exit() waited
// the whole second for a sender that was not there.
void FlushSenderAtExit(int timeout_ms);

// Ends the sender for good, once it has delivered what the process recorded
// (as FlushSenderAtExit, waiting at most `timeout_ms`), and closes its
// connection: for a process about to install a seccomp filter, which may
// refuse the sender's system calls or end the process for them
// (syscall_interposer.cc). Nothing starts it again while the shim is off.
void StopSender(int timeout_ms);
// Forgets the parent's task, its memory (not copied) and its socket: in a
// forked child, and in a copy made without fork()'s handlers (adopted or
// not).
void SenderForkChild();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_SENDER_H_
