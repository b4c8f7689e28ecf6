// Statistical tests of the Poisson byte sampler. Fixed seeds make them
// deterministic; the bounds are 5 standard deviations from the maths in
// sampler.h, so a correct sampler fails with probability < 1e-6 per check.
#include "sampler.h"

#include <math.h>

#include <algorithm>

#include <vector>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

constexpr uint64_t kR = 524288;

TEST(SamplerTest, ProbabilityMatchesFormula) {
  EXPECT_NEAR(SampleProbability(kR, kR), 1 - exp(-1.0), 1e-12);
  EXPECT_NEAR(SampleProbability(4096, kR), 0.0077820617, 1e-9);
  EXPECT_EQ(SampleProbability(1, 1), 1.0);
  EXPECT_EQ(SampleProbability(0, kR), 0.0);
}

TEST(SamplerTest, GapsAreExponentialWithMeanR) {
  SamplerState s{};
  SeedSampler(&s, 42, kR);
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  int below_mean = 0;
  for (int i = 0; i < n; ++i) {
    double g = static_cast<double>(NextGap(&s, kR));
    sum += g;
    sum_sq += g * g;
    below_mean += g <= kR;
  }
  double mean = sum / n;
  // Exp(R): sd = R, so the sample mean has sd R/sqrt(n).
  EXPECT_NEAR(mean, kR, 5 * kR / sqrt(n));
  // P(gap <= R) = 1 - 1/e; binomial sd.
  double p = 1 - exp(-1.0);
  EXPECT_NEAR(below_mean, n * p, 5 * sqrt(n * p * (1 - p)));
  // Variance R^2 (second moment 2R^2): checks the shape, not just the mean.
  double var = sum_sq / n - mean * mean;
  EXPECT_NEAR(var / (double(kR) * kR), 1.0, 0.05);
}

// Feeds `n` allocations of each size and checks the number of samples and the
// unbiased estimates of count and bytes.
void CheckUnbiased(const std::vector<uint64_t>& sizes, int n, uint64_t seed) {
  SamplerState s{};
  SeedSampler(&s, seed, kR);
  std::vector<double> sampled(sizes.size(), 0);
  for (int i = 0; i < n; ++i) {
    for (size_t k = 0; k < sizes.size(); ++k) {
      if (ShouldSample(&s, sizes[k], kR)) sampled[k] += 1;
    }
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    double size = static_cast<double>(sizes[k]);
    double p = SampleProbability(sizes[k], kR);
    double w = 1 / p;
    SCOPED_TRACE(testing::Message() << "size " << sizes[k]);
    // Number of samples: Binomial(n, p).
    EXPECT_NEAR(sampled[k], n * p, 5 * sqrt(n * p * (1 - p)) + 1);
    // Estimated bytes: sum of s*w over samples; true total n*s;
    // variance n * s^2 * (w - 1).
    double estimate = sampled[k] * size * w;
    EXPECT_NEAR(estimate, n * size, 5 * sqrt(n * size * size * (w - 1)) + size * w);
  }
}

TEST(SamplerTest, UnbiasedForOneSize) { CheckUnbiased({4096}, 2000000, 1); }

TEST(SamplerTest, UnbiasedForMixedSizes) {
  // Interleaved sizes from 16 B to 4 MiB share one thread's byte stream.
  CheckUnbiased({16, 100, 1024, 4096, 65536, 524288, 4194304}, 300000, 7);
}

TEST(SamplerTest, TotalBytesEstimateIsUnbiasedForRandomSizes) {
  SamplerState s{};
  SeedSampler(&s, 99, kR);
  uint64_t x = 12345;
  double truth = 0, estimate = 0, variance = 0;
  for (int i = 0; i < 3000000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t size = 1 + (x >> 33) % 20000;  // 1 B .. 20 KB
    double p = SampleProbability(size, kR);
    truth += size;
    variance += double(size) * size * (1 / p - 1);
    if (ShouldSample(&s, size, kR)) estimate += size / p;
  }
  EXPECT_NEAR(estimate, truth, 5 * sqrt(variance));
}

TEST(SamplerTest, TheFastPathTakesExactlyTheAllocationsBeforeThePoint) {
  // bytes_left = d: sampled iff size >= d (on x86 the subtraction's flags,
  // borrow or zero, are the test).
  for (uint64_t d : {1ull, 2ull, 4096ull, 1ull << 40}) {
    SamplerState s{d, 1};
    EXPECT_FALSE(TakeUnsampled(&s, d)) << d;
    EXPECT_EQ(s.bytes_left, d) << "a refused allocation leaves the state as it was";
    EXPECT_FALSE(TakeUnsampled(&s, d + 1)) << d;
    EXPECT_FALSE(TakeUnsampled(&s, SIZE_MAX)) << d;
    EXPECT_TRUE(TakeUnsampled(&s, d - 1)) << d;
    EXPECT_EQ(s.bytes_left, 1u);
    EXPECT_TRUE(TakeUnsampled(&s, 0));  // 0 < 1
    EXPECT_FALSE(TakeUnsampled(&s, 1));
  }
  SamplerState every{0, 1};  // R = 1 (and unseeded): every allocation, zero bytes too
  EXPECT_FALSE(TakeUnsampled(&every, 0));
  EXPECT_FALSE(TakeUnsampled(&every, 1));
  SamplerState off{};
  DisableSampler(&off);
  EXPECT_TRUE(TakeUnsampled(&off, 1u << 30));
}

TEST(SamplerTest, AHandlersAllocationsInsideTheCheckLeaveNoStuckCount) {
  // On x86 the check subtracts first and a refused allocation adds its size
  // back. A signal handler that allocates in between finds the count
  // wrapped; if it takes at least what was left, the add-back leaves the
  // count wrapped too, which would make this thread's every later
  // allocation look unsampled. Played out by hand:
  SamplerState s{};
  SeedSampler(&s, 7, kR);
  const uint64_t left = s.bytes_left;
  const size_t size = left + 100;  // reaches the point
  s.bytes_left -= size;            // the check's subtraction (borrows)
  EXPECT_TRUE(TakeUnsampled(&s, left + 5)) << "the handler's allocation takes the wrapped count";
  s.bytes_left += size;  // the add-back
  EXPECT_GT(s.bytes_left, uint64_t{1} << 63) << "wrapped";
  EXPECT_FALSE(SamplerDisabled(&s));
  // A slow path that samples draws a new gap over it:
  SamplerState sampling = s;
  EXPECT_TRUE(SampleSlow(&sampling, size, kR));
  EXPECT_LE(sampling.bytes_left, uint64_t{1} << 62);
  // One that does not (inside the shim's own work, before start) repairs it:
  RepairWrappedCount(&s);
  EXPECT_EQ(s.bytes_left, 0u);
  EXPECT_TRUE(ShouldSample(&s, 16, kR)) << "the next decision draws a new gap";
  EXPECT_LE(s.bytes_left, uint64_t{1} << 62);
  // ... and leaves a disabled thread and an ordinary count alone.
  SamplerState off{};
  DisableSampler(&off);
  EXPECT_TRUE(TakeUnsampled(&off, size_t{1} << 40));
  RepairWrappedCount(&off);
  EXPECT_TRUE(SamplerDisabled(&off));
  SamplerState ordinary{4096, 1};
  RepairWrappedCount(&ordinary);
  EXPECT_EQ(ordinary.bytes_left, 4096u);
}

TEST(SamplerTest, NegativeLogMatchesLibm) {
  // Every value NextGap can draw lies on the grid k * 2^-53, k in [1, 2^53]:
  // its ends, each power of two and its neighbours, and a million random
  // points between.
  std::vector<double> us = {0x1p-53, 0x2p-53, 0x3p-53, 1.0, 1.0 - 0x1p-53, 0.5, 0.7071067811865476,
                            0.7071067811865475, 0.7071067811865477};
  for (int e = 1; e <= 53; ++e) {
    const double p = ldexp(1.0, -e);
    for (double u : {p, p + 0x1p-53, p - 0x1p-53}) {
      if (u >= 0x1p-53) us.push_back(u);
    }
  }
  SamplerState s{};
  SeedSampler(&s, 99, kR);
  for (int i = 0; i < 1000000; ++i) {
    const uint64_t k = (s.rng = s.rng ^ (s.rng << 13) ^ (s.rng >> 7) ^ (s.rng << 17)) >> 11;
    us.push_back((static_cast<double>(k) + 1.0) * 0x1p-53);
  }
  double worst = 0;
  for (double u : us) {
    const double want = -log(u);
    const double got = NegativeLog(u);
    if (want == 0) {
      EXPECT_EQ(got, 0.0);
      continue;
    }
    worst = std::max(worst, fabs(got - want) / want);
  }
  EXPECT_LT(worst, 1e-15);
}

TEST(SamplerTest, ZeroByteAllocationsAreNeverSampled) {
  SamplerState s{};
  SeedSampler(&s, 3, kR);
  for (int i = 0; i < 100000; ++i) EXPECT_FALSE(ShouldSample(&s, 0, kR));
}

TEST(SamplerTest, RateOneRecordsEverything) {
  SamplerState s{};
  for (uint64_t size : {0, 1, 7, 4096, 1 << 20}) EXPECT_TRUE(ShouldSample(&s, size, 1));
  EXPECT_EQ(s.bytes_left, 0u);
}

TEST(SamplerTest, FirstAllocationSeedsAndDecides) {
  SamplerState s{};  // zero: as in fresh TLS
  int sampled = 0;
  for (int i = 0; i < 1000; ++i) sampled += ShouldSample(&s, 16, kR);
  EXPECT_NE(s.rng, 0u);
  EXPECT_GT(s.bytes_left, 0u);
  EXPECT_LT(sampled, 5);  // P(one 16 B sample) ~ 3e-5 each
}

TEST(SamplerTest, HugeAllocationsAreSampledWithoutOverflow) {
  SamplerState s{};
  SeedSampler(&s, 5, kR);
  EXPECT_TRUE(ShouldSample(&s, SIZE_MAX, kR));
  EXPECT_TRUE(ShouldSample(&s, SIZE_MAX / 2, kR));
}

TEST(SamplerTest, DisabledNeverSamples) {
  SamplerState s{};
  DisableSampler(&s);
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(ShouldSample(&s, 1 << 20, kR));
}

}  // namespace
}  // namespace heapwatch::preload
