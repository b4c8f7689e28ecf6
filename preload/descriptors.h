// The shim's file descriptors in a process that is not ours. The
// application may close any descriptor, the shim's too (daemons close
// everything from 3 up), and the kernel then gives that number to the next
// file or socket it opens. Whoever went on using the number wrote into the
// application's socket, read (and dropped) its bytes, closed its descriptor
// or, reading a blocking one, hung (tests/e2e/test_shim_reconnect.py,
// ShimClosedSocketTest). Three holders:
//  - the sender's socket (OwnDescriptor below);
//  - /proc/self/maps, kept open for the sender by a process about to take
//    /proc out of its reach (modules.h, KeepMappingsReadable);
//  - libunwind's pipe, which it opens once and through which it checks that
//    an address can be read (it reads a byte from one end, writes the byte
//    at the address into the other). The application's thread hung in
//    malloc, in libunwind's read() of the application's socket.
// So both live at high numbers, which the kernel hands out last
// (pipe_interposer.cc moves libunwind's), and before each use the sender
// checks that its number still names the file it opened (its inode); if
// not, it forgets the number without closing it and connects again.
#ifndef HEAPWATCH_PRELOAD_DESCRIPTORS_H_
#define HEAPWATCH_PRELOAD_DESCRIPTORS_H_

#include <sys/stat.h>
#include <sys/types.h>

namespace heapwatch::preload {

// Moves `fd` to the lowest free number from 3/4 of the soft RLIMIT_NOFILE,
// capped at 1024 (a higher number would grow the kernel's descriptor table),
// close-on-exec, and closes `fd`; returns the new number. Where it cannot
// (the limit is low, no number is free), returns `fd`, untouched.
int MoveToHighDescriptor(int fd);

class OwnDescriptor {
 public:
  // Takes `fd`, a file of `type` (S_IFSOCK: a socket): moves it high
  // (MoveToHighDescriptor) and notes its identity. False (and `fd` closed)
  // if it cannot be identified or is of another type.
  bool Adopt(int fd, unsigned type = S_IFSOCK);
  // The descriptor, or -1.
  int fd() const { return fd_; }
  // Whether fd() still names the file Adopt took. One fstat.
  bool StillOurs() const;
  // Closes the file if fd() still names it; forgets the number either way.
  void Close();
  // Closes it as Close() does, but keeps the number, for Forget() later: a
  // forked child's copy of the parent's socket, closed without writing to
  // the page this object is on (a page fault of every fork).
  void CloseKeepingNumber() const;
  // Forgets the number, closing nothing.
  void Forget() { fd_ = -1; }

 private:
  int fd_ = -1;
  unsigned type_ = 0;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Standard error, for the shim's lines (recorder.h, Say). A daemon that
// closed its standard descriptors may have opened a file of its own at 2
// since, and a line said then (at a first sample, a fork, a sandbox) was
// written into it. NoteStandardError notes what 2 names at the process's
// start (or that it is closed); StandardErrorAsNoted says whether it still
// names that (true before any note: a line said while the shim starts, before
// main). One fstat each.
void NoteStandardError();
bool StandardErrorAsNoted();

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_DESCRIPTORS_H_
