// The stack ids the collector already has on the sender's present
// connection, so that each stack goes out once, just before the first event
// that names it.
//
// Open addressing over ids in mmap'd memory (no heap). Ids are never 0
// (StackId), which marks an empty slot. Pages are faulted in only where ids
// land, and Clear of an empty set writes nothing: the default set is 2 MiB,
// and a process that never samples should not pay for it.
//
// The sender thread's alone: not thread safe.
#ifndef HEAPWATCH_PRELOAD_SENT_STACKS_H_
#define HEAPWATCH_PRELOAD_SENT_STACKS_H_

#include <stddef.h>
#include <stdint.h>

namespace heapwatch::preload {

class SentStacks {
 public:
  // `slots` a power of two >= 64. `memory`: slots * 8 zeroed bytes from
  // raw_memory.h, page-aligned (Clear gives its pages back), or nullptr for
  // a mapping of the set's own (advised MADV_WIPEONFORK). False without
  // memory.
  bool Init(uint64_t slots, uint64_t* memory = nullptr);
  bool Contains(uint64_t id) const;
  // Adds `id` (not yet present, not 0). A set 3/4 full forgets everything
  // first: the sender then re-sends stacks it had sent, which the collector
  // takes as they are, and the set never fills.
  void Add(uint64_t id);
  // Forgets every id (a new connection). Gives the pages back.
  void Clear();
  uint64_t size() const { return size_; }

 private:
  uint64_t* slots_ = nullptr;
  uint64_t mask_ = 0;
  uint64_t size_ = 0;
};

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_SENT_STACKS_H_
