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
#ifndef HEAPWATCH_PRELOAD_SAMPLER_H_
#define HEAPWATCH_PRELOAD_SAMPLER_H_

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
// the caller to SampleSlow with the state unchanged. On x86 the subtraction
// is the test: its flags say "size >= bytes_left" (borrow, or a zero
// result), so there is no compare before it (sub, jbe: one instruction
// fewer on every malloc and new). GCC does not derive the branch from the
// subtraction itself.
inline bool TakeUnsampled(SamplerState* s, size_t size) {
  uint64_t left = s->bytes_left;
#if defined(__x86_64__)
  bool sampled;
  asm("subq %[size], %[left]" : [left] "+r"(left), "=@ccbe"(sampled) : [size] "r"(size));
  if (__builtin_expect(sampled, 0)) return false;
#else
  if (__builtin_expect(size >= left, 0)) return false;
  left -= size;
#endif
  s->bytes_left = left;
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

// Probability that an allocation of `size` bytes is sampled at mean R.
double SampleProbability(uint64_t size, uint64_t mean_bytes);

// Makes every later ShouldSample() on this state return false quickly
// (profiling off for this thread).
inline void DisableSampler(SamplerState* s) { s->bytes_left = UINT64_MAX; }

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_SAMPLER_H_
