#include "sender_pacing.h"

namespace heapwatch::preload {
namespace {

constexpr uint64_t kFillFraction = 4;
constexpr uint64_t kBusyFraction = 2;

}  // namespace

uint64_t SenderSleepMs(uint64_t prev_ms, uint64_t drained, uint64_t elapsed_ns, uint64_t capacity) {
  if (drained > 0 && drained >= capacity / kBusyFraction) return 0;
  uint64_t limit = prev_ms * 2 < kSenderSleepMinMs ? kSenderSleepMinMs : prev_ms * 2;
  if (limit > kSenderSleepMaxMs) limit = kSenderSleepMaxMs;
  if (drained == 0) return limit;
  // Time for capacity/kFillFraction events at drained per elapsed_ns; the
  // elapsed time is capped so the product cannot overflow.
  constexpr uint64_t kMaxElapsedNs = 1000 * kSenderSleepMaxMs * 1000000;
  if (elapsed_ns > kMaxElapsedNs) elapsed_ns = kMaxElapsedNs;
  uint64_t fill_ms = capacity / kFillFraction * elapsed_ns / drained / 1000000;
  if (fill_ms < kSenderSleepMinMs) return kSenderSleepMinMs;
  return fill_ms < limit ? fill_ms : limit;
}

}  // namespace heapwatch::preload
