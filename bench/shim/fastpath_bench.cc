// Fast-path costs. BM_MallocFree* call the process's malloc/free, so running
// this binary with LD_PRELOAD=libheapwatch.so and without gives the ns the
// shim adds per pair (HEAPWATCH_SAMPLE_BYTES=1 makes every pair sampled).
// BM_MallocxSdallocx does the same with jemalloc's own API, found at run time
// (preload jemalloc, after the shim or alone). BM_Sampler* and BM_FreeFilter*
// time the shim's inline checks alone.
#include <dlfcn.h>
#include <stdlib.h>

#include <benchmark/benchmark.h>

#include "live_table.h"
#include "sampler.h"

namespace {

void BM_MallocFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = malloc(size);
    benchmark::DoNotOptimize(p);
    free(p);
  }
}
BENCHMARK(BM_MallocFree)->Arg(16)->Arg(256)->Arg(4096);

void BM_MallocFreeBatch(benchmark::State& state) {
  // 64 live blocks at a time: frees of pointers the table does not hold.
  void* ptrs[64];
  for (auto _ : state) {
    for (auto& p : ptrs) p = malloc(64);
    benchmark::DoNotOptimize(ptrs);
    for (auto& p : ptrs) free(p);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_MallocFreeBatch);

void BM_MallocxSdallocx(benchmark::State& state) {
  auto mallocx = reinterpret_cast<void* (*)(size_t, int)>(dlsym(RTLD_DEFAULT, "mallocx"));
  auto sdallocx = reinterpret_cast<void (*)(void*, size_t, int)>(dlsym(RTLD_DEFAULT, "sdallocx"));
  if (!mallocx || !sdallocx) {
    state.SkipWithError("no mallocx/sdallocx: preload jemalloc");
    return;
  }
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = mallocx(size, 0);
    benchmark::DoNotOptimize(p);
    sdallocx(p, size, 0);
  }
}
BENCHMARK(BM_MallocxSdallocx)->Arg(16)->Arg(256)->Arg(4096);

void BM_SamplerFastPath(benchmark::State& state) {
  heapwatch::preload::SamplerState s{};
  heapwatch::preload::SeedSampler(&s, 1, 524288);
  size_t sampled = 0;
  for (auto _ : state) {
    sampled += heapwatch::preload::ShouldSample(&s, 64, 524288);
    benchmark::DoNotOptimize(s.bytes_left);
  }
  benchmark::DoNotOptimize(sampled);
}
BENCHMARK(BM_SamplerFastPath);

void BM_FreeFilterMiss(benchmark::State& state) {
  heapwatch::preload::LiveTable t;
  t.Init(1 << 16);
  for (uint64_t i = 1; i <= 1000; ++i) t.Insert({i * 0x100000, 1, 1, 1});  // a typical live set
  uint64_t a = 0x7f0000001000;
  size_t hits = 0;
  for (auto _ : state) {
    hits += t.MaybeContains(a);
    a += 48;
  }
  benchmark::DoNotOptimize(hits);
}
BENCHMARK(BM_FreeFilterMiss);

}  // namespace

BENCHMARK_MAIN();
