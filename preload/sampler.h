// Per-thread Poisson sampling over allocated bytes.
//
// Not thread safe: each thread owns one SamplerState (in initial-exec TLS,
// zero-initialised). The fast path is inline: a subtraction and a branch on
// its flags (TakeUnsampled). Everything else is out of line in sampler.cc.
//
// The maths. Think of every byte a thread allocates laid end to end on a line,
// and of "sample points" scattered on that line by a Poisson process with rate
// 1/R (R = HEAPWATCH_SAMPLE_BYTES, mean bytes between points). An allocation
// of s bytes occupies an interval of length s and is sampled when at least one
// point falls inside it:
//
//     P(sampled | s) = 1 - exp(-s/R)
//
// With R = 512 KiB:   s = 16 B     -> p = 3.05e-5   (1 in 32769)
//                     s = 4 KiB    -> p = 0.0078    (1 in 128.5)
//                     s = 64 KiB   -> p = 0.118
//                     s = 512 KiB  -> p = 0.632
//                     s = 4 MiB    -> p = 0.99966
// so large allocations are almost always caught and small ones statistically.
// A sampled allocation therefore stands for w(s) = 1 / (1 - exp(-s/R))
// allocations and s * w(s) bytes: E[sum over samples of s*w(s)] = sum of s over
// all allocations (each allocation contributes s*w(s) with probability 1/w(s)),
// i.e. the estimate is unbiased; its variance is sum s^2 (w(s) - 1).
// The collector computes w from s and R (R travels in the Hello frame).
//
// Implementation: the gaps between Poisson points are Exp(R). bytes_left holds
// the distance from the current position to the next point, rounded up to an
// integer (ceil(E) <= s iff E <= s for integer s, so rounding changes nothing).
// An allocation of s bytes is sampled iff s >= bytes_left. After a sample a
// fresh Exp(R) gap is drawn: by memorylessness the distance from the end of
// this allocation to the next point is Exp(R) whatever happened inside it.
// Zero-byte allocations are never sampled (an empty interval holds no point).
//
// R == 1 is special: "record every allocation", weight exactly 1. (A Poisson
// process with R = 1 would still miss 37% of 1-byte allocations.) bytes_left
// stays 0 so every allocation takes the slow path and is sampled.
//
// The fast path subtracts in memory before it looks (TakeUnsampled), and an
// allocation that reaches a point adds its size back before the slow path.
// A signal handler that allocates between the two finds the count wrapped
// (the subtraction borrowed) and takes its bytes off a huge count; the
// add-back then leaves the count wrapped if the handler took at least what
// was left. A slow path that samples draws a new gap over it; one that does
// not (inside the shim's own work, before start) sets it to 0
// (RepairWrappedCount), which a count no thread reaches otherwise can be
// told by: gaps are at most 2^62 and a disabled thread's count starts at
// 3 * 2^62, which no thread can allocate its way out of.
#ifndef HEAPWATCH_PRELOAD_SAMPLER_H_
#define HEAPWATCH_PRELOAD_SAMPLER_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>

namespace heapwatch::preload {

struct SamplerState {
  uint64_t bytes_left;  // 0 = not yet seeded: the first allocation goes slow
  uint64_t rng;         // xorshift64* state; 0 = unseeded
};

// Slow path: seeds on first use, decides, draws the next gap.
bool SampleSlow(SamplerState* s, size_t size, uint64_t mean_bytes);

// The fast path: true, and `size` taken off bytes_left, when an allocation
// of `size` bytes is certainly not sampled (size < bytes_left); false sends
// the caller to SampleSlow with the state unchanged. On x86 one instruction
// subtracts in memory and sets the flags that are the test: a borrow or a
// zero result is "size >= bytes_left" (hence jbe, not a borrow alone: a
// zero-byte allocation at R = 1 must go slow). So malloc is the TLS
// offset's load, that subtraction, the branch and the tail call; the rare
// allocation that reaches a point adds its size back (see the top).
inline bool TakeUnsampled(SamplerState* s, size_t size) {
#if defined(__x86_64__)
  bool sampled;
  asm("subq %[size], %[left]" : [left] "+m"(s->bytes_left), "=@ccbe"(sampled) : [size] "r"(size));
  if (__builtin_expect(sampled, 0)) {
    s->bytes_left += size;
    return false;
  }
#else
  if (__builtin_expect(size >= s->bytes_left, 0)) return false;
  s->bytes_left -= size;
#endif
  return true;
}

// True when this allocation of `size` bytes must be recorded.
inline bool ShouldSample(SamplerState* s, size_t size, uint64_t mean_bytes) {
  return !TakeUnsampled(s, size) && SampleSlow(s, size, mean_bytes);
}

// Seeds the generator explicitly (tests; otherwise seeded from time, thread
// and address on first use). Also draws the first gap.
void SeedSampler(SamplerState* s, uint64_t seed, uint64_t mean_bytes);

// Draws one gap ~ ceil(Exp(mean)), at least 1, at most 2^62.
uint64_t NextGap(SamplerState* s, uint64_t mean_bytes);

// -ln(u) for u in [2^-53, 1], within a few ulps: the shim's own, so that it
// does not need libm, which a program that does not use it (a shell, ls,
// true) would otherwise load for the shim alone (~75 us of every exec here).
double NegativeLog(double u);

// Probability that an allocation of `size` bytes is sampled at mean R (the
// collector's weight is its inverse; tests). Inline: the shim never calls it.
inline double SampleProbability(uint64_t size, uint64_t mean_bytes) {
  if (mean_bytes <= 1) return 1.0;
  return -expm1(-static_cast<double>(size) / static_cast<double>(mean_bytes));
}

// Makes every later ShouldSample() on this state return false quickly
// (profiling off for this thread): a count of 3 * 2^62 bytes, which no
// thread allocates its way below 2^62 (the largest gap) or up to a wrapped
// count.
constexpr uint64_t kDisabledCount = 3ull << 62;
inline void DisableSampler(SamplerState* s) { s->bytes_left = kDisabledCount; }
inline bool SamplerDisabled(const SamplerState* s) {
  return s->bytes_left > (1ull << 62) && s->bytes_left <= kDisabledCount;
}

// For a slow path that does not sample: a count left wrapped by a signal
// handler's allocations (see the top) becomes 0, "a point was reached", so
// the thread's next sampling decision draws a new gap.
inline void RepairWrappedCount(SamplerState* s) {
  if (s->bytes_left > kDisabledCount) s->bytes_left = 0;
}

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_SAMPLER_H_
