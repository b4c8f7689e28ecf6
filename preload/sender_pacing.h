// How long the sender thread (sender.h) sleeps between rounds.
//
// It sleeps for as long as the ring can take at the rate events came in the
// last round: until it is about 1/kFillFraction full (sender_pacing.cc),
// within [kSenderSleepMinMs, kSenderSleepMaxMs]. A sleep grows at most
// twofold a round (one short round is a noisy rate) and shrinks at once; a
// round that took 1/kBusyFraction of the ring goes round again without
// sleeping, and nothing is lost when the ring fills anyway (a drop costs a
// resync, not data).
// Each round wakes the sender and the collector, and on a machine with fewer
// cores than busy threads each wake-up preempts the application: sending
// shim_alloc_workload's ~80,000 events/s (24 GB/s allocated) in rounds of
// 10 ms cost it ~10% of its CPU, at ~40 ms ~3% (against a collector that
// discards, as in bench/shim/run_breakdown.sh).
// A quiet process wakes every kSenderSleepMaxMs: ~10 wake-ups a second at
// ~50 us of CPU each on the development VM. A burst can still outrun a sleep
// sized for the last round's rate, so the push that starts each half of the
// ring wakes the sender if it sleeps (NudgeSender: a syscall on the sampling
// path once a half ring, only then); an exiting process wakes it too.
#ifndef HEAPWATCH_PRELOAD_SENDER_PACING_H_
#define HEAPWATCH_PRELOAD_SENDER_PACING_H_

#include <stdint.h>

namespace heapwatch::preload {

constexpr uint64_t kSenderSleepMinMs = 10, kSenderSleepMaxMs = 100;

// How long the sender sleeps after a round that took `drained` events from
// a ring of `capacity` slots, `elapsed_ns` after the round before it, which
// was followed by a sleep of `prev_ms`. 0: go round again at once, the ring
// is filling. A pure function.
uint64_t SenderSleepMs(uint64_t prev_ms, uint64_t drained, uint64_t elapsed_ns, uint64_t capacity);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_SENDER_PACING_H_
