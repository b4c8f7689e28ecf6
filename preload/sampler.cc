#include "sampler.h"

#include <math.h>
#include <string.h>
#include <time.h>

namespace heapwatch::preload {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t NextRandom(SamplerState* s) {
  uint64_t x = s->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  s->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

}  // namespace

double NegativeLog(double u) {
  // u = m * 2^e with m in [sqrt(1/2), sqrt(2)), and ln(m) = 2 atanh(z) with
  // z = (m - 1) / (m + 1), |z| <= 0.1716: the series 2 (z + z^3/3 + z^5/5
  // + ...) cut after z^21 is off by under 1e-16, and with rounding the
  // result is within 6.6e-16 of libm's (20M draws). u is normal (at least
  // 2^-53), so the exponent is its biased field less 1023.
  uint64_t bits;
  memcpy(&bits, &u, sizeof bits);
  int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1023} << 52);  // m in [1, 2)
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    ++e;
  }
  const double z = (m - 1.0) / (m + 1.0);
  const double z2 = z * z;
  // 1 + z2/3 + z2^2/5 + ... + z2^10/21 by Estrin's scheme (pairs, then
  // pairs of pairs): a chain of four multiplications where Horner's rule has
  // ten (a division a term, as first written, was ~4x libm's time).
  const double z4 = z2 * z2, z8 = z4 * z4, z16 = z8 * z8;
  const double p0 = 1.0 + z2 * (1.0 / 3), p1 = 1.0 / 5 + z2 * (1.0 / 7);
  const double p2 = 1.0 / 9 + z2 * (1.0 / 11), p3 = 1.0 / 13 + z2 * (1.0 / 15);
  const double p4 = 1.0 / 17 + z2 * (1.0 / 19), p5 = 1.0 / 21;
  const double series = (p0 + z4 * p1) + z8 * (p2 + z4 * p3) + z16 * (p4 + z4 * p5);
  constexpr double kLn2 = 0.6931471805599453;
  return -(static_cast<double>(e) * kLn2 + 2.0 * z * series);
}

uint64_t NextGap(SamplerState* s, uint64_t mean_bytes) {
  // u uniform in (0, 1]: 53 random bits, +1 so the logarithm never sees 0.
  double u = (static_cast<double>(NextRandom(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double gap = ceil(NegativeLog(u) * static_cast<double>(mean_bytes));
  if (gap < 1.0) return 1;
  if (gap > 4611686018427387904.0) return 1ull << 62;
  return static_cast<uint64_t>(gap);
}

void SeedSampler(SamplerState* s, uint64_t seed, uint64_t mean_bytes) {
  s->rng = SplitMix64(seed) | 1;  // xorshift state must be non-zero
  s->bytes_left = mean_bytes <= 1 ? 0 : NextGap(s, mean_bytes);
}

bool SampleSlow(SamplerState* s, size_t size, uint64_t mean_bytes) {
  if (mean_bytes <= 1) {
    s->bytes_left = 0;
    return true;
  }
  if (SamplerDisabled(s)) return false;
  if (s->rng == 0) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    SeedSampler(s, static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 30) ^
                       reinterpret_cast<uintptr_t>(s),
                mean_bytes);
    if (TakeUnsampled(s, size)) return false;
  }
  s->bytes_left = NextGap(s, mean_bytes);
  return true;
}

}  // namespace heapwatch::preload
