// Symbolizer cost per address, on a real binary with DWARF: by default this
// benchmark's own executable; HWSYM_BENCH_FILE=/path picks another (e.g. the
// much larger heapwatchd). Addresses are spread over its executable segments.
//
//   [HWSYM_BENCH_FILE=build/collector/heapwatchd] heapwatch_symbolizer_bench
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "symbolizer/elf_file.h"
#include "symbolizer/symbolizer.h"

namespace {

namespace sym = heapwatch::symbolizer;

struct Target {
  sym::ModuleRef module;
  std::vector<uint64_t> vaddrs;
};

// One address every 61 bytes (odd, so not aligned to function starts) of
// each executable PT_LOAD.
void AddTextAddresses(const std::string& path, std::vector<uint64_t>* vaddrs) {
  elf_version(EV_CURRENT);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  size_t count = 0;
  if (elf != nullptr && elf_getphdrnum(elf, &count) == 0) {
    for (size_t i = 0; i < count; ++i) {
      GElf_Phdr phdr;
      if (gelf_getphdr(elf, static_cast<int>(i), &phdr) == nullptr) continue;
      if (phdr.p_type != PT_LOAD || (phdr.p_flags & PF_X) == 0) continue;
      for (uint64_t a = phdr.p_vaddr; a < phdr.p_vaddr + phdr.p_memsz; a += 61) {
        vaddrs->push_back(a);
      }
    }
  }
  if (elf != nullptr) elf_end(elf);
  close(fd);
}

const Target& Self() {
  static const Target target = [] {
    Target t;
    const char* file = getenv("HWSYM_BENCH_FILE");
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    t.module.path = file != nullptr ? file : std::string(self, n > 0 ? n : 0);
    sym::ElfFile elf;
    std::string error;
    if (sym::OpenElfFile("", t.module.path, &elf, &error) == sym::ElfOpenResult::kOk) {
      t.module.build_id = elf.build_id;
    }
    AddTextAddresses(t.module.path, &t.vaddrs);
    if (t.vaddrs.empty()) t.vaddrs.push_back(0);
    return t;
  }();
  return target;
}

const std::vector<std::string> kRoots = {""};

void BM_CachedLookup(benchmark::State& state) {
  const Target& target = Self();
  sym::Symbolizer symbolizer;
  symbolizer.SymbolizeMany(target.module, kRoots, target.vaddrs);  // warm
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        symbolizer.Symbolize(target.module, kRoots, target.vaddrs[i++ % target.vaddrs.size()]));
  }
  state.counters["addresses"] = static_cast<double>(target.vaddrs.size());
}
BENCHMARK(BM_CachedLookup);

void BM_CachedPeek(benchmark::State& state) {
  const Target& target = Self();
  sym::Symbolizer symbolizer;
  symbolizer.SymbolizeMany(target.module, kRoots, target.vaddrs);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        symbolizer.Peek(target.module, kRoots, target.vaddrs[i++ % target.vaddrs.size()]));
  }
}
BENCHMARK(BM_CachedPeek);

// Every lookup walks DWARF (the address cache holds nothing); the module
// stays open.
void BM_UncachedLookup(benchmark::State& state) {
  const Target& target = Self();
  sym::Options options;
  options.max_cached_addresses = 0;
  sym::Symbolizer symbolizer(options);
  symbolizer.Symbolize(target.module, kRoots, target.vaddrs[0]);  // open + load DWARF
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        symbolizer.Symbolize(target.module, kRoots, target.vaddrs[i++ % target.vaddrs.size()]));
  }
}
BENCHMARK(BM_UncachedLookup);

void BM_UncachedBatch(benchmark::State& state) {
  const Target& target = Self();
  sym::Options options;
  options.max_cached_addresses = 0;
  sym::Symbolizer symbolizer(options);
  symbolizer.Symbolize(target.module, kRoots, target.vaddrs[0]);
  std::vector<uint64_t> batch(target.vaddrs.begin(),
                              target.vaddrs.begin() + std::min<size_t>(256, target.vaddrs.size()));
  for (auto _ : state) {
    benchmark::DoNotOptimize(symbolizer.SymbolizeMany(target.module, kRoots, batch));
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch.size()));
}
BENCHMARK(BM_UncachedBatch);

// A fresh symbolizer each time: open, verify build-id, load DWARF, look up.
void BM_ColdModule(benchmark::State& state) {
  const Target& target = Self();
  const uint64_t vaddr = target.vaddrs[target.vaddrs.size() / 2];
  for (auto _ : state) {
    sym::Symbolizer symbolizer;
    benchmark::DoNotOptimize(symbolizer.Symbolize(target.module, kRoots, vaddr));
  }
}
BENCHMARK(BM_ColdModule)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
