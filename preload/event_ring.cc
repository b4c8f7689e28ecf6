#include "event_ring.h"

#include <string.h>

#include "raw_memory.h"

namespace heapwatch::preload {

bool EventRing::Init(uint64_t slots) {
  if (slots < 4 || (slots & (slots - 1)) != 0) return false;  // kWriting < slots
  bytes_ = slots * sizeof(Slot);
  slots_ = static_cast<Slot*>(MapZeroed(bytes_));
  if (!slots_) return false;
  mask_ = slots - 1;
  head_.store(0, std::memory_order_relaxed);
  tail_ = 0;
  return true;  // zero pages: every slot free for lap 0 (see the header)
}

bool EventRing::PrefaultAhead(size_t max_bytes) {
  const size_t limit = bytes_ < max_bytes ? bytes_ : max_bytes;
  if (!slots_ || prefaulted_ >= limit) return false;
  const uint64_t head = head_.load(std::memory_order_relaxed);
  if (head > mask_) {  // past its first lap: every slot has been written
    prefaulted_ = limit;
    return false;
  }
  const size_t head_bytes = head * sizeof(Slot), ahead = bytes_ / 4;
  if (head_bytes + ahead / 2 < prefaulted_) return false;
  size_t end = (head_bytes + ahead + kPageBytes - 1) & ~(kPageBytes - 1);
  if (end > limit) end = limit;
  const bool mapped = PrefaultPages(reinterpret_cast<char*>(slots_) + prefaulted_, end - prefaulted_);
  // Without MADV_POPULATE_WRITE (Linux < 5.14) it is not tried again.
  prefaulted_ = mapped ? end : limit;
  return mapped;
}

bool EventRing::WipeOnFork() {
  if (!slots_) return false;
  int expected = kNoWipe;
  if (!wipe_.compare_exchange_strong(expected, kWipeAdvising, std::memory_order_seq_cst)) {
    return expected == kWiped;
  }
  bool wiped = heapwatch::preload::WipeOnFork(slots_, bytes_);
  wipe_.store(wiped ? kWiped : kNoWipe, std::memory_order_seq_cst);
  return wiped;
}

void EventRing::ResetUnsafe() {
  if (!slots_) return;
  if (!DiscardPages(slots_, bytes_)) memset(static_cast<void*>(slots_), 0, bytes_);
  head_.store(0, std::memory_order_relaxed);
  tail_ = 0;
  stalled_tail_ = kNoPosition;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

HEAPWATCH_FORK_CHILD_CODE void EventRing::DiscardUnsafe() {
  if (!slots_) return;
  int wipe = wipe_.load(std::memory_order_relaxed);
  if (wipe == kWiped) {  // the slots are zero pages again: lap 0
    head_.store(0, std::memory_order_relaxed);
    tail_ = 0;
    // Not one 16-byte store with tail_: its constant would be read from
    // .rodata, a page of its own that a forked child faults in for it.
    if (stalled_tail_ != kNoPosition) stalled_tail_ = kNoPosition;
    return;
  }
  if (wipe == kWipeAdvising || head_.load(std::memory_order_relaxed) != tail_) return ResetUnsafe();
  if (stalled_tail_ != kNoPosition) stalled_tail_ = kNoPosition;
}

// Slot `pos & mask_` stores seq - (pos & mask_); the arithmetic below is the
// classic scheme's on the restored seq. A slot being written holds its free
// value + kWriting, which no producer of this lap or the next takes for free
// (kWriting < capacity).
EventRing::Slot* EventRing::Claim(uint64_t* claimed) {
  if (!slots_) return nullptr;
  uint64_t pos = head_.load(std::memory_order_relaxed);
  for (;;) {
    Slot& s = slots_[pos & mask_];
    uint64_t stored = s.seq.load(std::memory_order_acquire);
    int64_t diff = static_cast<int64_t>(stored + (pos & mask_) - pos);
    if (diff == 0) {
      if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        // Fails only if the consumer gave up on this position already
        // (GiveUp): this producer was stopped for that long.
        if (!s.seq.compare_exchange_strong(stored, stored + kWriting, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
          return nullptr;
        }
        *claimed = pos;
        return &s;
      }
    } else if (diff < 0) {
      return nullptr;  // full: the consumer has not freed this slot yet
    } else {
      pos = head_.load(std::memory_order_relaxed);
    }
  }
}

bool EventRing::Publish(Slot* s, uint64_t pos, const wire::EventRecord& ev) {
  s->ev = ev;
  // A compare-and-swap, not a store: the consumer may have given up on the
  // position meanwhile, and the slot may be another lap's by now.
  uint64_t writing = pos - (pos & mask_) + kWriting;
  return s->seq.compare_exchange_strong(writing, writing - kWriting + 1, std::memory_order_release,
                                        std::memory_order_relaxed);
}

bool EventRing::Push(const wire::EventRecord& ev, bool* half_lap) {
  uint64_t pos;
  Slot* s = Claim(&pos);
  if (!s || !Publish(s, pos, ev)) return false;
  if (half_lap) *half_lap = (pos & (mask_ >> 1)) == 0;
  return true;
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

bool EventRing::Unpublished() const {
  if (!slots_ || head_.load(std::memory_order_acquire) == tail_) return false;
  const uint64_t index = tail_ & mask_;
  return slots_[index].seq.load(std::memory_order_acquire) + index != tail_ + 1;
}

bool EventRing::GiveUp() {
  if (!Unpublished()) return false;
  const uint64_t index = tail_ & mask_;
  const uint64_t free_value = tail_ - index;
  Slot& s = slots_[index];
  uint64_t stored = s.seq.load(std::memory_order_acquire);
  if (stored != free_value && stored != free_value + kWriting) return false;
  if (!s.seq.compare_exchange_strong(stored, free_value + mask_ + 1, std::memory_order_acq_rel)) {
    return false;  // published meanwhile
  }
  ++tail_;
  return true;
}

bool EventRing::GiveUpStalled(uint64_t now_ns, uint64_t after_ns) {
  if (!Unpublished()) {
    stalled_tail_ = kNoPosition;
    return false;
  }
  if (tail_ != stalled_tail_) {
    stalled_tail_ = tail_;
    stalled_since_ns_ = now_ns;
    return false;
  }
  if (now_ns - stalled_since_ns_ < after_ns || !GiveUp()) return false;
  stalled_tail_ = kNoPosition;
  return true;
}

}  // namespace heapwatch::preload
