#include "event_ring.h"

#include "raw_memory.h"

namespace heapwatch::preload {

bool EventRing::Init(uint64_t slots) {
  if (slots < 2 || (slots & (slots - 1)) != 0) return false;
  slots_ = static_cast<Slot*>(MapZeroed(slots * sizeof(Slot)));
  if (!slots_) return false;
  mask_ = slots - 1;
  ResetUnsafe();
  return true;
}

void EventRing::ResetUnsafe() {
  if (!slots_) return;
  for (uint64_t i = 0; i <= mask_; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
  head_.store(0, std::memory_order_relaxed);
  tail_ = 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool EventRing::Push(const wire::EventRecord& ev) {
  if (!slots_) return false;
  uint64_t pos = head_.load(std::memory_order_relaxed);
  for (;;) {
    Slot& s = slots_[pos & mask_];
    uint64_t seq = s.seq.load(std::memory_order_acquire);
    int64_t diff = static_cast<int64_t>(seq - pos);
    if (diff == 0) {
      if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        s.ev = ev;
        s.seq.store(pos + 1, std::memory_order_release);
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
  Slot& s = slots_[tail_ & mask_];
  if (s.seq.load(std::memory_order_acquire) != tail_ + 1) return false;
  *ev = s.ev;
  s.seq.store(tail_ + mask_ + 1, std::memory_order_release);
  ++tail_;
  return true;
}

}  // namespace heapwatch::preload
