#include "event_ring.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace heapwatch::preload {

// A push in its two halves: a producer that a signal handler jumped out of
// halfway claims and goes no further.
class EventRingTestPeer {
 public:
  static bool Claim(EventRing* r, uint64_t* pos) {
    slot_ = r->Claim(pos);
    return slot_ != nullptr;
  }
  static bool ClaimOnly(EventRing* r) {
    uint64_t pos;
    return Claim(r, &pos);
  }
  // The last claim's.
  static bool Publish(EventRing* r, uint64_t pos, const wire::EventRecord& ev) {
    return r->Publish(slot_, pos, ev);
  }

 private:
  static inline EventRing::Slot* slot_ = nullptr;
};

namespace {

wire::EventRecord Ev(uint32_t tid, uint64_t seq) {
  return {static_cast<uint32_t>(wire::EventKind::kAlloc), tid, seq, seq, seq, seq};
}

// Takes `ring` round `n` positions, each pushed and popped at once (tid 1).
void PushAndPop(EventRing* ring, uint64_t n) {
  wire::EventRecord ev;
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(ring->Push(Ev(1, i)));
    ASSERT_TRUE(ring->Pop(&ev));
  }
}

long MinorFaults() {
  rusage usage;
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// Minor page faults this thread takes in pushing `n` events to `ring`,
// calling ring.PrefaultAhead before every `every` of them (never if 0), as
// the sender does each round. Not counted: the prefault's own, which the
// kernel counts as the calling thread's.
long FaultsToPush(EventRing& ring, uint64_t n, uint64_t every = 0) {
  long faults = 0;
  for (uint64_t i = 0; i < n;) {
    if (every) ring.PrefaultAhead(1u << 20);
    const uint64_t end = every && i + every < n ? i + every : n;
    const long before = MinorFaults();
    for (; i < end; ++i) EXPECT_TRUE(ring.Push(Ev(1, i)));
    faults += MinorFaults() - before;
  }
  return faults;
}

TEST(EventRingTest, PrefaultAheadMapsAQuarterRingPastTheHead) {
  EventRing cold, warm;
  ASSERT_TRUE(cold.Init(8192));  // 8192 64-byte slots: 128 pages
  ASSERT_TRUE(warm.Init(8192));
  if (!warm.PrefaultAhead(1u << 20)) GTEST_SKIP() << "no MADV_POPULATE_WRITE in this kernel";
  EXPECT_GE(FaultsToPush(cold, 8192), 100);
  // A quarter ring (32 pages) is mapped, and no more: the next quarter is not.
  EXPECT_LT(FaultsToPush(warm, 2048), 5);
  EXPECT_FALSE(warm.PrefaultAhead(0)) << "nothing past a limit of 0 bytes";
  EXPECT_GE(FaultsToPush(warm, 2048), 24);
  // Called as the sender would, it keeps ahead of the pushes.
  EXPECT_LT(FaultsToPush(warm, 4096, 256), 5);
  EXPECT_FALSE(warm.PrefaultAhead(1u << 20)) << "the whole ring is mapped";
}

TEST(EventRingTest, PrefaultAheadWaitsUntilTheHeadComesNear) {
  EventRing ring;
  ASSERT_TRUE(ring.Init(8192));
  if (!ring.PrefaultAhead(1u << 20)) GTEST_SKIP() << "no MADV_POPULATE_WRITE in this kernel";
  // Mapped up to slot 2048: nothing more until the head passes slot 1024.
  EXPECT_LT(FaultsToPush(ring, 1000), 5);
  EXPECT_FALSE(ring.PrefaultAhead(1u << 20));
  EXPECT_LT(FaultsToPush(ring, 100), 5);
  EXPECT_TRUE(ring.PrefaultAhead(1u << 20));
  // Mapped up to slot 1100 + 2048: 3148 - 1100 more pushes without a fault.
  EXPECT_LT(FaultsToPush(ring, 2040), 5);
  // A small limit is kept to.
  EventRing limited;
  ASSERT_TRUE(limited.Init(8192));
  ASSERT_TRUE(limited.PrefaultAhead(16384));  // 4 pages, 256 slots
  EXPECT_LT(FaultsToPush(limited, 256), 3);
  EXPECT_FALSE(limited.PrefaultAhead(16384));
  EXPECT_GE(FaultsToPush(limited, 1024), 10);
}

TEST(EventRingTest, FifoAndFull) {
  EventRing r;
  ASSERT_TRUE(r.Init(8));
  wire::EventRecord ev;
  EXPECT_FALSE(r.Pop(&ev));
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(r.Push(Ev(1, i)));
  EXPECT_FALSE(r.Push(Ev(1, 8))) << "a full ring refuses instead of waiting";
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(r.Pop(&ev));
    EXPECT_EQ(ev.address, i);
  }
  EXPECT_FALSE(r.Pop(&ev));
  // Wraps around.
  for (uint64_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(r.Push(Ev(1, i)));
    ASSERT_TRUE(r.Pop(&ev));
    EXPECT_EQ(ev.address, i);
  }
}

TEST(EventRingTest, APushThatStartsAHalfLapSaysSo) {
  // 8 slots: positions 0, 4, 8, 12, ... start a half; a full ring says
  // nothing (the push failed) and the next successful push at a half's
  // start says it again.
  EventRing r;
  ASSERT_TRUE(r.Init(8));
  wire::EventRecord ev;
  std::vector<uint64_t> halves;
  for (uint64_t pos = 0; pos < 20; ++pos) {
    bool half = true;
    ASSERT_TRUE(r.Push(Ev(1, pos), &half));
    if (half) halves.push_back(pos);
    ASSERT_TRUE(r.Pop(&ev));
  }
  EXPECT_EQ(halves, (std::vector<uint64_t>{0, 4, 8, 12, 16}));
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(r.Push(Ev(1, 20 + i)));  // positions 20..27
  bool half = false;
  EXPECT_FALSE(r.Push(Ev(1, 28), &half));
  EXPECT_FALSE(half);
  ASSERT_TRUE(r.Pop(&ev));
  EXPECT_TRUE(r.Push(Ev(1, 28), &half));  // position 28 = 7 * 4
  EXPECT_TRUE(half);
}

TEST(EventRingTest, UninitialisedRingDropsSafely) {
  EventRing r;
  wire::EventRecord ev;
  EXPECT_FALSE(r.Push(Ev(1, 1)));
  EXPECT_FALSE(r.Pop(&ev));
}

TEST(EventRingTest, ResetForgetsAbandonedClaims) {
  EventRing r;
  ASSERT_TRUE(r.Init(4));
  ASSERT_TRUE(r.Push(Ev(1, 1)));
  r.ResetUnsafe();
  wire::EventRecord ev;
  EXPECT_FALSE(r.Pop(&ev));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.Push(Ev(1, i)));
}

TEST(EventRingTest, TheConsumerGivesUpOnAPositionNeverPublished) {
  EventRing r;
  ASSERT_TRUE(r.Init(8));
  wire::EventRecord ev;
  EXPECT_FALSE(r.Unpublished());
  EXPECT_FALSE(r.GiveUp());  // empty: nothing to give up on
  ASSERT_TRUE(r.Push(Ev(1, 1)));
  EXPECT_FALSE(r.Unpublished());
  EXPECT_FALSE(r.GiveUp());  // published: Pop takes it
  ASSERT_TRUE(EventRingTestPeer::ClaimOnly(&r));
  ASSERT_TRUE(r.Push(Ev(1, 3)));
  ASSERT_TRUE(r.Pop(&ev));
  EXPECT_EQ(ev.address, 1u);
  // The claimed position holds back the event after it.
  EXPECT_FALSE(r.Pop(&ev));
  EXPECT_TRUE(r.Unpublished());
  EXPECT_EQ(r.tail(), 1u);
  EXPECT_TRUE(r.GiveUp());
  ASSERT_TRUE(r.Pop(&ev));
  EXPECT_EQ(ev.address, 3u);
  EXPECT_FALSE(r.Pop(&ev));
  // The given-up slot is free again: the ring holds `slots` events, laps on.
  for (uint64_t lap = 0; lap < 3; ++lap) {
    for (uint64_t i = 0; i < 8; ++i) EXPECT_TRUE(r.Push(Ev(2, 100 + i))) << lap << " " << i;
    EXPECT_FALSE(r.Push(Ev(2, 0)));
    for (uint64_t i = 0; i < 8; ++i) {
      ASSERT_TRUE(r.Pop(&ev));
      EXPECT_EQ(ev.address, 100 + i);
    }
  }
}

TEST(EventRingTest, AProducerTheConsumerGaveUpOnDropsItsEvent) {
  // Claimed, marked as being written, then given up on (the producer was
  // stopped for that long): its publication fails, and the next lap's
  // producer gets the slot.
  EventRing r;
  ASSERT_TRUE(r.Init(4));
  uint64_t pos = 99;
  ASSERT_TRUE(EventRingTestPeer::Claim(&r, &pos));
  EXPECT_EQ(pos, 0u);
  ASSERT_TRUE(r.GiveUp());
  EXPECT_FALSE(EventRingTestPeer::Publish(&r, pos, Ev(3, 77)));
  wire::EventRecord ev;
  EXPECT_FALSE(r.Pop(&ev));  // nothing published
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.Push(Ev(3, i)));
  EXPECT_FALSE(r.Push(Ev(3, 9)));
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(r.Pop(&ev));
    EXPECT_EQ(ev.address, i);
  }
  EXPECT_FALSE(r.Pop(&ev));
  // A claim published late (the producer was slow, not gone) is still taken.
  ASSERT_TRUE(EventRingTestPeer::Claim(&r, &pos));
  EXPECT_EQ(pos, 5u);
  EXPECT_TRUE(r.Unpublished());
  EXPECT_TRUE(EventRingTestPeer::Publish(&r, pos, Ev(3, 5)));
  EXPECT_FALSE(r.GiveUp());
  ASSERT_TRUE(r.Pop(&ev));
  EXPECT_EQ(ev.address, 5u);
}

TEST(EventRingTest, GivesUpOnlyOnAPositionStalledForTheWholeWait) {
  EventRing r;
  ASSERT_TRUE(r.Init(8));
  wire::EventRecord ev;
  EXPECT_FALSE(r.GiveUpStalled(0, 100));  // empty
  ASSERT_TRUE(EventRingTestPeer::ClaimOnly(&r));
  ASSERT_TRUE(r.Push(Ev(1, 2)));
  EXPECT_FALSE(r.GiveUpStalled(1000, 100));  // first seen stalled now
  EXPECT_FALSE(r.GiveUpStalled(1099, 100));
  EXPECT_FALSE(r.Pop(&ev));
  EXPECT_TRUE(r.GiveUpStalled(1100, 100));
  ASSERT_TRUE(r.Pop(&ev));
  EXPECT_EQ(ev.address, 2u);
  // A stall at a new position is timed from when it is first seen.
  ASSERT_TRUE(EventRingTestPeer::ClaimOnly(&r));
  EXPECT_FALSE(r.GiveUpStalled(5000, 100));
  EXPECT_FALSE(r.GiveUpStalled(5050, 100));
  EXPECT_TRUE(r.GiveUpStalled(5100, 100));
}

TEST(EventRingTest, AResetForgetsAStallItWasTiming) {
  // A forked child's ring starts at position 0 again: a stall the parent's
  // sender was timing there is not the child's.
  EventRing r;
  ASSERT_TRUE(r.Init(8));
  ASSERT_TRUE(EventRingTestPeer::ClaimOnly(&r));
  EXPECT_FALSE(r.GiveUpStalled(5000, 100));
  r.ResetUnsafe();
  ASSERT_TRUE(EventRingTestPeer::ClaimOnly(&r));
  EXPECT_FALSE(r.GiveUpStalled(5150, 100));
  EXPECT_TRUE(r.GiveUpStalled(5250, 100));
}

TEST(EventRingTest, DiscardKeepsADrainedRingAndEmptiesAnyOther) {
  // Drained (every claimed position consumed): nothing is reset, positions
  // go on, and the ring holds exactly `slots` again.
  EventRing r;
  ASSERT_TRUE(r.Init(8));
  wire::EventRecord ev;
  PushAndPop(&r, 8 * 3 + 5);
  r.DiscardUnsafe();
  EXPECT_EQ(r.tail(), 8u * 3 + 5);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(r.Push(Ev(2, i)));
  EXPECT_FALSE(r.Push(Ev(2, 8)));
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(r.Pop(&ev));
    EXPECT_EQ(ev.address, i);
  }
  // Not drained (one published, one claimed and never published): reset.
  ASSERT_TRUE(r.Push(Ev(3, 1)));
  ASSERT_TRUE(EventRingTestPeer::ClaimOnly(&r));
  r.DiscardUnsafe();
  EXPECT_EQ(r.tail(), 0u);
  EXPECT_FALSE(r.Pop(&ev));
  EXPECT_FALSE(r.Unpublished());
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(r.Push(Ev(4, i)));
  EXPECT_FALSE(r.Push(Ev(4, 8)));
  ASSERT_TRUE(r.Pop(&ev));
  EXPECT_EQ(ev.tid, 4u);
}

// What a forked child's DiscardUnsafe left: 0 if the ring takes exactly its
// capacity in pushes from position `first` and gives them back in order.
int ChildRingWorks(EventRing& r, uint64_t first) {
  r.DiscardUnsafe();
  if (r.tail() != first) return 1;
  wire::EventRecord ev;
  for (uint64_t i = 0; i < r.capacity(); ++i) {
    if (!r.Push(Ev(5, i))) return 2;
  }
  if (r.Push(Ev(5, r.capacity()))) return 3;
  for (uint64_t i = 0; i < r.capacity(); ++i) {
    if (!r.Pop(&ev) || ev.address != i) return 4;
  }
  return r.Pop(&ev) ? 5 : 0;
}

int InForkedChild(EventRing& r, uint64_t first) {
  pid_t pid = fork();
  if (pid == 0) _exit(ChildRingWorks(r, first));
  int status = -1;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(EventRingTest, AForkedChildOfAWipedRingStartsAtLapZero) {
  // The kernel hands the child zero slots (lap 0) whatever lap the parent's
  // were at: a drained ring's positions, kept by the child as they are
  // without the wipe, would find every slot "full".
  EventRing r;
  ASSERT_TRUE(r.Init(64));
  if (!r.WipeOnFork()) GTEST_SKIP() << "no MADV_WIPEONFORK in this kernel";
  EXPECT_TRUE(r.WipeOnFork());  // once is enough; a second call says so
  PushAndPop(&r, 64 * 3 + 5);
  EXPECT_EQ(InForkedChild(r, 0), 0);
  // Not drained: the same.
  ASSERT_TRUE(r.Push(Ev(3, 1)));
  ASSERT_TRUE(EventRingTestPeer::ClaimOnly(&r));
  EXPECT_EQ(InForkedChild(r, 0), 0);
  // The parent's ring is as it was: the published event, then the claim it
  // waits at.
  wire::EventRecord ev;
  ASSERT_TRUE(r.Pop(&ev));
  EXPECT_EQ(ev.tid, 3u);
  EXPECT_TRUE(r.Unpublished());
}

TEST(EventRingTest, AForkedChildOfAnUnwipedDrainedRingGoesOn) {
  EventRing r;
  ASSERT_TRUE(r.Init(64));
  PushAndPop(&r, 64 * 3 + 5);
  EXPECT_EQ(InForkedChild(r, 64 * 3 + 5), 0);
}

TEST(EventRingTest, ResetAfterManyLapsStartsAFreshRing) {
  // Slots store their sequence relative to their index, and a reset gives
  // the pages back: after it the ring must hold exactly `slots` again.
  EventRing r;
  ASSERT_TRUE(r.Init(8));
  wire::EventRecord ev;
  PushAndPop(&r, 8 * 5 + 3);
  ASSERT_TRUE(r.Push(Ev(1, 100)));  // claimed and published, never consumed
  r.ResetUnsafe();
  EXPECT_FALSE(r.Pop(&ev));
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(r.Push(Ev(2, i)));
  EXPECT_FALSE(r.Push(Ev(2, 8)));
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(r.Pop(&ev));
    EXPECT_EQ(ev.tid, 2u);
    EXPECT_EQ(ev.address, i);
  }
  EXPECT_FALSE(r.Pop(&ev));
}

TEST(EventRingTest, ManyProducersOneConsumerLoseAndReorderNothing) {
  EventRing r;
  ASSERT_TRUE(r.Init(1024));
  constexpr int kProducers = 4;
  constexpr uint64_t kPerProducer = 300000;
  std::atomic<uint64_t> refused{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (uint64_t i = 0; i < kPerProducer;) {
        if (r.Push(Ev(p, i))) {
          ++i;
        } else {
          refused.fetch_add(1);
          std::this_thread::yield();
        }
      }
    });
  }
  std::vector<uint64_t> next(kProducers, 0);
  uint64_t total = 0, out_of_order = 0;
  wire::EventRecord ev;
  while (total < kProducers * kPerProducer) {
    if (!r.Pop(&ev)) continue;
    ASSERT_LT(ev.tid, uint32_t{kProducers});
    if (ev.address != next[ev.tid] || ev.size != ev.address || ev.time_ns != ev.address) {
      ++out_of_order;
    }
    next[ev.tid] = ev.address + 1;
    ++total;
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_FALSE(r.Pop(&ev));
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(next[p], kPerProducer);
}

}  // namespace
}  // namespace heapwatch::preload
