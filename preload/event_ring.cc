#include "event_ring.h"

#include <string.h>

#include "raw_memory.h"

namespace heapwatch::preload {

bool EventRing::Init(uint64_t slots) {
  if (slots < 2 || (slots & (slots - 1)) != 0) return false;
  bytes_ = slots * sizeof(Slot);
  slots_ = static_cast<Slot*>(MapZeroed(bytes_));
  if (!slots_) return false;
  mask_ = slots - 1;
  head_.store(0, std::memory_order_relaxed);
  tail_ = 0;
  return true;  // zero pages: every slot free for lap 0 (see the header)
}

bool EventRing::Prefault(size_t max_bytes) {
  return slots_ && PrefaultPages(slots_, bytes_ < max_bytes ? bytes_ : max_bytes);
}

void EventRing::ResetUnsafe() {
  if (!slots_) return;
  if (!DiscardPages(slots_, bytes_)) memset(static_cast<void*>(slots_), 0, bytes_);
  head_.store(0, std::memory_order_relaxed);
  tail_ = 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// Slot `pos & mask_` stores seq - (pos & mask_); the arithmetic below is the
// classic scheme's on the restored seq.
bool EventRing::Push(const wire::EventRecord& ev, bool* half_lap) {
  if (!slots_) return false;
  uint64_t pos = head_.load(std::memory_order_relaxed);
  for (;;) {
    Slot& s = slots_[pos & mask_];
    uint64_t seq = s.seq.load(std::memory_order_acquire) + (pos & mask_);
    int64_t diff = static_cast<int64_t>(seq - pos);
    if (diff == 0) {
      if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        s.ev = ev;
        s.seq.store(pos + 1 - (pos & mask_), std::memory_order_release);
        if (half_lap) *half_lap = (pos & (mask_ >> 1)) == 0;
        return true;
      }
    } else if (diff < 0) {
      return false;  // full: the consumer has not freed this slot yet
    } else {
      pos = head_.load(std::memory_order_relaxed);
    }
  }
}

bool EventRing::Pop(wire::EventRecord* ev) {
  if (!slots_) return false;
  const uint64_t index = tail_ & mask_;
  Slot& s = slots_[index];
  if (s.seq.load(std::memory_order_acquire) + index != tail_ + 1) return false;
  *ev = s.ev;
  s.seq.store(tail_ + mask_ + 1 - index, std::memory_order_release);
  ++tail_;
  return true;
}

}  // namespace heapwatch::preload
