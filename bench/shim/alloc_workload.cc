// An allocation-heavy workload for whole-process overhead: THREADS threads
// each run OPS operations over a live set of 4096 blocks, mostly small
// (16 B .. 1 KiB), some medium (.. 16 KiB), a few large (.. 256 KiB), with
// C++ strings and vectors in between, touching what they allocate.
// HOLD_MB > 0 first allocates that many MiB in 16 KiB blocks and holds them
// for the run (a service's big heap: ~2 samples a MiB at the default rate),
// and reports on stderr the CPU seconds of the operations alone
// ("ops-cpu-s 1.234", the whole process's user+sys).
//   shim_alloc_workload [THREADS=2] [OPS=4000000] [HOLD_MB=0]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <string>
#include <thread>
#include <vector>

namespace {

uint64_t Work(uint64_t seed, long ops) {
  constexpr int kLive = 4096;
  std::vector<void*> live(kLive, nullptr);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1, sum = 0;
  for (long i = 0; i < ops; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t size;
    uint64_t kind = x % 100;
    if (kind < 85) {
      size = 16 + (x >> 8) % 1008;
    } else if (kind < 99) {
      size = 1024 + (x >> 8) % 15360;
    } else {
      size = 16384 + (x >> 8) % 245760;
    }
    void*& slot = live[(x >> 32) % kLive];
    free(slot);
    slot = malloc(size);
    static_cast<char*>(slot)[0] = static_cast<char>(i);
    static_cast<char*>(slot)[size - 1] = 1;
    if (i % 16 == 0) {
      std::string s(32 + (x >> 40) % 200, 'x');
      std::vector<int> v((x >> 44) % 64 + 1, 1);
      sum += s.size() + v.size();
    }
  }
  for (void* p : live) free(p);
  return sum;
}

}  // namespace

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  long ops = argc > 2 ? atol(argv[2]) : 4000000;
  long hold_mb = argc > 3 ? atol(argv[3]) : 0;
  std::vector<void*> held;
  for (long i = 0; i < hold_mb * 64; ++i) {
    held.push_back(malloc(16384));
    static_cast<char*>(held.back())[0] = 1;
  }
  double cpu_before = CpuSeconds();
  std::vector<uint64_t> sums(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { sums[t] = Work(t + 1, ops); });
  for (auto& th : pool) th.join();
  if (hold_mb > 0) fprintf(stderr, "ops-cpu-s %.6f\n", CpuSeconds() - cpu_before);
  for (void* p : held) free(p);
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  printf("%llu\n", static_cast<unsigned long long>(total));
  return 0;
}
