// Bounded lock-free multi-producer, single-consumer ring of EventRecords, in
// mmap'd memory. Producers (any application thread, also signal handlers)
// never wait: a full ring makes Push fail and the caller counts a drop. The
// single consumer is the sender thread.
//
// Each slot carries a sequence number (the classic bounded-queue scheme):
// slot i is free for the producer that claimed position p when seq == p, and
// holds an event for the consumer at position p when seq == p + 1. A slot
// stores its sequence minus its own index (`seq - i`, the same for every
// position that maps to it), so the initial state (seq == i) is all zeros:
// the zero pages mmap returns. Init writes nothing and a slot's page is
// touched only when the ring first reaches it (the default ring is 512 KiB,
// 16 MiB at HEAPWATCH_SAMPLE_BYTES=1: writing it cost every process, also a
// short-lived one that never samples, ~128 and ~4,100 page faults). Positions
// are claimed with one CAS, so the ring order is a total order consistent with
// each thread's program order: an event pushed after another (in real time,
// on any threads) has a later position. The sender's resync argument relies on
// this (see sender_connection.cc).
//
// A producer that claimed a slot and was then preempted holds back the
// consumer until it publishes; it never holds back other producers. One that
// never publishes (a signal handler jumped out of its push) held it back for
// good, and every event after it was lost; so the consumer can give up on a
// position (GiveUp, GiveUpStalled). The producer
// marks its slot while it writes and publishes with a compare-and-swap, so
// if it does go on after that, it finds out and drops its event (its write
// of the slot could still meet the next lap's: preload/README, "Known
// limits").
#ifndef HEAPWATCH_PRELOAD_EVENT_RING_H_
#define HEAPWATCH_PRELOAD_EVENT_RING_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include <heapwatch/wire.h>

namespace heapwatch::preload {

class EventRing {
 public:
  // `slots` a power of two >= 4.
  bool Init(uint64_t slots);
  // The address space Init maps for `slots`.
  static uint64_t AddressSpace(uint64_t slots) { return slots * sizeof(Slot); }
  bool initialized() const { return slots_ != nullptr; }
  uint64_t capacity() const { return slots_ ? mask_ + 1 : 0; }
  // Whether any push has claimed a slot since Init or the last reset.
  bool used() const { return head_.load(std::memory_order_relaxed) != 0; }
  // Consumer only. Maps the ring's pages a quarter ring ahead of its head
  // (see PrefaultPages), within its first `max_bytes`, so that pushes do not
  // each take a page's first-touch fault: whenever the head comes within an
  // eighth of a ring of what earlier calls mapped, up to a quarter past it.
  // The sender calls it every round, and wakes about every quarter ring
  // (sender_pacing.h); pushes that outrun it fault their pages in as they
  // would without it. Mapping the whole ring at once made 512 KiB resident
  // in every process that sampled (128 pages), most of it in pages a
  // short-lived one never reached. False if nothing was mapped (not needed
  // yet, no ring, or a kernel without it).
  bool PrefaultAhead(size_t max_bytes);
  // Advises the slots MADV_WIPEONFORK (raw_memory.h): fork then copies none
  // of the ring's page table entries (128 at the default size, a third of
  // what a small process that samples has), the parent's next pushes take
  // no copy-on-write faults, and a forked child finds the slots as Init left
  // them, which DiscardUnsafe knows. Any thread, at any time; once.
  bool WipeOnFork();

  // Any thread. False when full (or not initialised).
  bool Push(const wire::EventRecord& ev) { return Push(ev, nullptr); }
  // The same, and true in *half_lap when this push claimed the first slot of
  // a half of the ring: once every capacity/2 pushes, on one thread.
  bool Push(const wire::EventRecord& ev, bool* half_lap);
  // Starts loading the slot the next Push will likely write (the head's, if
  // no other thread pushes first) and the head itself: the slot was last
  // written by the consumer a lap ago and is a cache miss. A hint; always
  // inlined, see LiveTable::PrefetchForInsert.
  __attribute__((always_inline)) void PrefetchForPush() const {
    if (!slots_) return;
    __builtin_prefetch(&slots_[head_.load(std::memory_order_relaxed) & mask_], 1);
  }
  // Consumer only. False when empty (or the next slot is not yet published).
  bool Pop(wire::EventRecord* ev);
  // Consumer only. Whether Pop waits at a position a producer claimed and
  // has not published.
  bool Unpublished() const;
  // Consumer only. Skips that position, whose event is lost; false if there
  // is none or it was published meanwhile (Pop takes it).
  bool GiveUp();
  // Consumer only, between Pops: GiveUp once Pop has waited at the same
  // unpublished position for `after_ns` by `now_ns` (the caller's clock, as
  // it reads it at each call). True if it gave up on one.
  bool GiveUpStalled(uint64_t now_ns, uint64_t after_ns);
  // Consumer only: the next position Pop takes.
  uint64_t tail() const { return tail_; }

  // Re-initialises positions and sequences. Only when no other thread can
  // touch the ring: in the child after fork, where a producer of the parent
  // may have died between claim and publish. Gives the pages back
  // (MADV_DONTNEED) rather than rewriting them, which after fork would copy
  // every page the parent had touched.
  void ResetUnsafe();
  // Empties the ring, as ResetUnsafe does but writing nothing where it can.
  // Where the kernel wiped the slots for this forked child (WipeOnFork), the
  // positions start again at 0. Otherwise, when every claimed position has
  // been consumed (head == tail), every slot is free for its next position
  // already, and positions go on from there: in a forked child, which
  // usually finds the ring drained, that spares the ring's pages the madvise
  // and a copy-on-write fault each.
  void DiscardUnsafe();

 private:
  struct alignas(64) Slot {
    std::atomic<uint64_t> seq;  // sequence minus the slot's index (0 = free, lap 0)
    wire::EventRecord ev;
  };
  static constexpr uint64_t kWriting = 2;
  // The two halves of Push. Claim takes the next position and marks its slot
  // as being written (*pos, the slot), or nullptr when full; Publish writes
  // the event there, false if the consumer gave up on the position.
  Slot* Claim(uint64_t* pos);
  bool Publish(Slot* s, uint64_t pos, const wire::EventRecord& ev);
  friend class EventRingTestPeer;
  Slot* slots_ = nullptr;
  uint64_t mask_ = 0;
  size_t bytes_ = 0;
  size_t prefaulted_ = 0;  // bytes of the ring PrefaultAhead has mapped or given up on
  alignas(64) std::atomic<uint64_t> head_{0};  // next position to claim
  alignas(64) uint64_t tail_ = 0;              // next position to consume
  // The unpublished position Pop waits at, and since when (GiveUpStalled);
  // kNoPosition if none.
  static constexpr uint64_t kNoPosition = UINT64_MAX;
  uint64_t stalled_tail_ = kNoPosition;
  uint64_t stalled_since_ns_ = 0;
  // WipeOnFork's progress. kWipeAdvising is stored before the madvise: a
  // child forked meanwhile cannot know whether its slots were wiped, and
  // resets them (ResetUnsafe is right either way). kNoWipe in a child means
  // the fork came before the madvise.
  enum : int { kNoWipe = 0, kWipeAdvising = 1, kWiped = 2 };
  std::atomic<int> wipe_{kNoWipe};
};

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_EVENT_RING_H_
