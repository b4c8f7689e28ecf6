// One connection's stream of frames to the collector, for the sender thread
// (sender.cc): hello, module maps, stacks, events, resyncs and stats, written
// into the sender's buffers and flushed to its socket. Only the sender thread
// calls these. The thread's life (start, rounds, sleep, pause, exit, fork) is
// sender.cc's.
#ifndef HEAPWATCH_PRELOAD_SENDER_CONNECTION_H_
#define HEAPWATCH_PRELOAD_SENDER_CONNECTION_H_

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <atomic>

#include <heapwatch/wire.h>

#include "descriptors.h"
#include "frame_writer.h"
#include "recorder.h"
#include "sender_pacing.h"
#include "sent_stacks.h"

namespace heapwatch::preload {

constexpr size_t kOutBytes = wire::kMaxFrameBytes + (256u << 10);
constexpr size_t kModuleBytes = 1u << 20;
// Events go from the ring into a batch, a batch into the output as one
// Events frame, and the output to the socket once it holds kEagerFlushBytes
// (and at the end of every round). Both buffers are mapped lazily, so these
// sizes are also the pages they ever fault in: with a batch of 8192 events
// (320 KiB) and the whole round in the output, a short sampling process
// took ~90 page faults in the sender, ~1 ms on the development VM.
constexpr uint32_t kBatchEvents = 1024;
constexpr uint64_t kSentSlots = 1u << 18;
constexpr uint64_t kBackoffMinMs = 10, kBackoffMaxMs = 500;

// The sender's state, mmap'd once (StartSender); a forked child reuses it.
struct SenderState {
  OwnDescriptor sock;  // the connection (descriptors.h: the application may take its number)
  bool ever_connected = false;
  // The ring holds every event since recording began (sender_connection.cc, at
  // the top).
  bool ring_complete = true;
  uint64_t resync_generation = 0;
  // The mappings of the last module map sent (modules.h), and when they are
  // to be read again (SendModulesIfChanged).
  uint64_t modules_fingerprint = 0;
  uint64_t modules_stacks = 0;
  uint64_t modules_epoch = 0;
  uint64_t next_modules_ns = 0;
  uint64_t next_connect_ms = 0;
  uint64_t backoff_ms = kBackoffMinMs;
  uint64_t next_stats_ns = 0;
  uint64_t sleep_ms = kSenderSleepMinMs;
  uint64_t last_round_ns = 0;  // when the previous round began (rate of events)
  uint32_t batch_len = 0;
  uint8_t* out_mem = nullptr;
  uint8_t* module_mem = nullptr;
  wire::EventRecord* batch = nullptr;
  SentStacks sent;  // the stacks sent on this connection
  FrameWriter out{nullptr, 0};
  char exe[wire::kMaxPathBytes + 1] = {};
};

// Whether a connection is up, and whether the last connect failed in a way a
// retry may cure (the collector's listen backlog was full): an exiting
// process keeps trying until its deadline (FlushSenderAtExit).
extern std::atomic<bool> g_connected;
extern std::atomic<bool> g_connect_retryable;

inline uint64_t MonoNs() { return ClockNs(CLOCK_MONOTONIC); }
inline uint64_t MonoMs() { return MonoNs() / 1000000; }

// Connects and sends hello, modules, the table (or nothing, to replay the
// ring: sender_connection.cc, at the top) and stats. False if not connected.
bool Connect(SenderState* s);
// Forgets the connection; the next connect waits for the backoff.
void Disconnect(SenderState* s);
// Sends the whole output buffer, waiting (the sender, never the application)
// up to a deadline; false, and disconnected, if it could not.
bool Flush(SenderState* s);
// The module map, read now (modules.h).
bool SendModules(SenderState* s);
// The module map again if the process's mappings changed since the last one
// sent; they are read when a new stack was captured (its pcs may lie in an
// object loaded since: at most every 50 ms), when the unload epoch moved, and
// every second (an object loaded that no sample has run through yet).
bool SendModulesIfChanged(SenderState* s);
bool SendStats(SenderState* s);
// The whole live table between resync markers, after the ring's events.
bool Resync(SenderState* s);
// Takes at most 32,768 events from the ring into the output, each new stack
// ahead of its first event; returns how many. *io_ok turns false on a
// connection error.
uint32_t DrainRing(SenderState* s, bool* io_ok);
// Takes every event from the ring unsent (nobody connected), as drops.
void DiscardRing(SenderState* s);

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_SENDER_CONNECTION_H_
