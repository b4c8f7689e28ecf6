#include "sent_stacks.h"

#include <string.h>

#include "raw_memory.h"

namespace heapwatch::preload {

bool SentStacks::Init(uint64_t slots, uint64_t* memory) {
  if (slots < 64 || (slots & (slots - 1)) != 0 || slots_) return false;
  // A forked child's copy starts empty (a set that forgot its ids, which
  // the child's first connection clears anyway), and fork copies none of
  // the pages the ids landed on.
  slots_ = memory ? memory : static_cast<uint64_t*>(MapZeroedWipedOnFork(slots * sizeof(uint64_t)));
  if (!slots_) return false;
  mask_ = slots - 1;
  size_ = 0;
  return true;
}

bool SentStacks::Contains(uint64_t id) const {
  if (!slots_) return false;
  for (uint64_t i = id;; ++i) {
    const uint64_t slot = slots_[i & mask_];
    if (slot == id) return true;
    if (slot == 0) return false;  // the set is never full (Add)
  }
}

void SentStacks::Add(uint64_t id) {
  if (!slots_ || id == 0) return;
  if (size_ >= (mask_ + 1) / 4 * 3) Clear();
  for (uint64_t i = id;; ++i) {
    uint64_t& slot = slots_[i & mask_];
    if (slot == id) return;
    if (slot == 0) {
      slot = id;
      ++size_;
      return;
    }
  }
}

void SentStacks::Clear() {
  if (size_ == 0) return;
  const size_t bytes = (mask_ + 1) * sizeof(uint64_t);
  if (!DiscardPages(slots_, bytes)) memset(slots_, 0, bytes);
  size_ = 0;
}

}  // namespace heapwatch::preload
