// Bounded lock-free multi-producer, single-consumer ring of EventRecords, in
// mmap'd memory. Producers (any application thread, also signal handlers)
// never wait: a full ring makes Push fail and the caller counts a drop. The
// single consumer is the sender thread.
//
// Each slot carries a sequence number (the classic bounded-queue scheme):
// slot i is free for the producer that claimed position p when seq == p, and
// holds an event for the consumer at position p when seq == p + 1. Positions
// are claimed with one CAS, so the ring order is a total order consistent with
// each thread's program order: an event pushed after another (in real time,
// on any threads) has a later position. The sender's resync argument relies on
// this (see sender.cc).
//
// A producer that claimed a slot and was then preempted holds back the
// consumer until it publishes; it never holds back other producers.
#ifndef HEAPWATCH_PRELOAD_EVENT_RING_H_
#define HEAPWATCH_PRELOAD_EVENT_RING_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include <heapwatch/wire.h>

namespace heapwatch::preload {

class EventRing {
 public:
  // `slots` a power of two >= 2.
  bool Init(uint64_t slots);
  bool initialized() const { return slots_ != nullptr; }

  // Any thread. False when full (or not initialised).
  bool Push(const wire::EventRecord& ev);
  // Consumer only. False when empty (or the next slot is not yet published).
  bool Pop(wire::EventRecord* ev);

  // Re-initialises positions and sequences. Only when no other thread can
  // touch the ring: in the child after fork, where a producer of the parent
  // may have died between claim and publish.
  void ResetUnsafe();

 private:
  struct alignas(64) Slot {
    std::atomic<uint64_t> seq;
    wire::EventRecord ev;
  };
  Slot* slots_ = nullptr;
  uint64_t mask_ = 0;
  alignas(64) std::atomic<uint64_t> head_{0};  // next position to claim
  alignas(64) uint64_t tail_ = 0;              // next position to consume
};

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_EVENT_RING_H_
