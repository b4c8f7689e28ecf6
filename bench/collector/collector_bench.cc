// Benchmarks of the collector's hot paths, in process (no sockets):
//
//   BM_Ingest              decode + apply a shim stream (the ingest path of
//                          one connection), events per second on one core
//   BM_ProfileEndpoint     /api/v1/profile's work at N stacks: BuildProfileData,
//                          BuildCallTree, JSON dump (and each part alone)
//   BM_PprofEndpoint       /debug/pprof/heap's work: BuildProfileData,
//                          EncodePprof, Gzip
//   BM_*EndpointWarm       the same after the first request, as served: the
//                          ProfileCache updates the profile with what changed
//   BM_StackMemory         heap bytes the collector holds per 100k stacks
//                          (mallinfo2 deltas; reported as counters)
//
// Stacks are synthetic but shaped like a program's: depth 24, sharing their
// outer frames (a call tree that fans out), in one module, unsymbolized (the
// symbolizer has its own benchmark; names here are module+0xOFFSET strings).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "collector/call_tree.h"
#include "collector/frame_decoder.h"
#include "collector/pprof.h"
#include "collector/process.h"
#include "collector/profile_cache.h"
#include "collector/profile_data.h"
#include "collector/wire_test_util.h"

namespace hw = heapwatch::collector;
using hw::testing::StreamBuilder;

namespace {

constexpr uint64_t kModuleStart = 0x400000;
constexpr uint64_t kModuleEnd = 0x4000000;
constexpr uint32_t kDepth = 24;

// Program counters of stack i: frame k (from the root) depends on i's high
// bits only, so neighbours share callers as in a real call tree.
std::vector<uint64_t> StackPcs(uint64_t i, uint32_t depth = kDepth) {
  std::vector<uint64_t> pcs(depth);
  for (uint32_t k = 0; k < depth; ++k) {
    uint32_t from_root = depth - 1 - k;
    uint64_t prefix = from_root >= 17 ? i : (i >> (17 - from_root));
    // At most 40,009 distinct call sites per level, 16 bytes apart.
    pcs[k] = kModuleStart + 0x1000 + ((prefix % 40009) * 32 + from_root) * 16;
  }
  return pcs;
}

// Applies frames to a Process, as the ingest session does.
class ApplySink : public hw::FrameSink {
 public:
  explicit ApplySink(const hw::Limits& limits) : limits_(limits), budget_(limits.max_total_stacks) {}
  void OnHello(const hw::HelloMsg& msg) override {
    process_ = std::make_unique<hw::Process>(1, 0, msg, limits_, &budget_, 0);
  }
  void OnModulesReset() override { process_->ResetModules(); }
  void OnModule(const hw::ModuleMsg& msg) override { process_->AddModule(msg); }
  void OnStack(const hw::StackMsg& msg) override { process_->AddStack(msg); }
  void OnEvents(const uint8_t* records, uint32_t count) override { process_->ApplyEvents(records, count); }
  void OnResyncBegin(const heapwatch::wire::ResyncMarker&) override { process_->BeginResync(); }
  void OnResyncEnd(const heapwatch::wire::ResyncMarker&) override { process_->EndResync(); }
  void OnStats(const heapwatch::wire::Stats& s) override { process_->SetShimStats(s); }
  hw::Process& process() { return *process_; }

 private:
  hw::Limits limits_;
  size_t budget_;
  std::unique_ptr<hw::Process> process_;
};

// A stream with `stacks` stacks, then `events` events: allocations on random
// stacks, each freed ~live_target events later (a steady live set).
std::string MakeStream(size_t stacks, size_t events, size_t live_target, uint64_t sample_bytes) {
  StreamBuilder b;
  b.Hello(1, sample_bytes).ModulesReset().Module(kModuleStart, kModuleEnd, 0, "/usr/bin/app", "0123456789abcdef");
  for (size_t i = 0; i < stacks; ++i) b.Stack(i + 1, StackPcs(i));
  std::mt19937_64 rng(42);
  std::vector<uint64_t> live;
  live.reserve(live_target);
  uint64_t next_address = 0x10000000;
  for (size_t n = 0; n < events; ++n) {
    if (live.size() >= live_target && (rng() & 1)) {
      size_t k = rng() % live.size();
      b.Free(live[k], n);
      live[k] = live.back();
      live.pop_back();
    } else {
      uint64_t address = next_address += 64;
      b.Alloc(address, 32 + rng() % 4096, 1 + rng() % stacks, n);
      live.push_back(address);
    }
    if ((n + 1) % 1000 == 0) b.Flush();  // ~40 KB frames, as the shim's sender batches
  }
  return b.bytes();
}

size_t CountEvents(const std::string& stream) {
  size_t events = 0;
  for (size_t off = 0; off + sizeof(heapwatch::wire::FrameHeader) <= stream.size();) {
    heapwatch::wire::FrameHeader h;
    std::memcpy(&h, stream.data() + off, sizeof(h));
    if (h.type == static_cast<uint16_t>(heapwatch::wire::FrameType::kEvents)) {
      uint32_t count;
      std::memcpy(&count, stream.data() + off + sizeof(h), sizeof(count));
      events += count;
    }
    off += sizeof(h) + h.length;
  }
  return events;
}

void Feed(const std::string& stream, hw::FrameDecoder& decoder, hw::FrameSink& sink) {
  // 64 KiB reads, like the ingest session's buffer.
  const auto* data = reinterpret_cast<const uint8_t*>(stream.data());
  for (size_t off = 0; off < stream.size(); off += 65536) {
    size_t n = std::min<size_t>(65536, stream.size() - off);
    if (decoder.Feed({data + off, n}, sink) != hw::DecodeError::kNone) std::abort();
  }
}

void BM_Ingest(benchmark::State& state) {
  const size_t stacks = static_cast<size_t>(state.range(0));
  const std::string stream = MakeStream(stacks, 1000000, 100000, 4096);
  const size_t events = CountEvents(stream);
  for (auto _ : state) {
    hw::FrameDecoder decoder;
    ApplySink sink(hw::Limits{});
    Feed(stream, decoder, sink);
    benchmark::DoNotOptimize(sink.process().heap_bytes());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * events));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
  state.counters["events"] = static_cast<double>(events);
}
BENCHMARK(BM_Ingest)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Decode only (a sink that does nothing): the decoder's share of ingest.
class NullSink : public hw::FrameSink {
 public:
  void OnHello(const hw::HelloMsg&) override {}
  void OnModulesReset() override {}
  void OnModule(const hw::ModuleMsg&) override {}
  void OnStack(const hw::StackMsg&) override {}
  void OnEvents(const uint8_t*, uint32_t count) override { events += count; }
  void OnResyncBegin(const heapwatch::wire::ResyncMarker&) override {}
  void OnResyncEnd(const heapwatch::wire::ResyncMarker&) override {}
  void OnStats(const heapwatch::wire::Stats&) override {}
  uint64_t events = 0;
};

void BM_DecodeOnly(benchmark::State& state) {
  const std::string stream = MakeStream(1000, 1000000, 100000, 4096);
  const size_t events = CountEvents(stream);
  for (auto _ : state) {
    hw::FrameDecoder decoder;
    NullSink sink;
    Feed(stream, decoder, sink);
    benchmark::DoNotOptimize(sink.events);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * events));
}
BENCHMARK(BM_DecodeOnly)->Unit(benchmark::kMillisecond)->UseRealTime();

// A process holding `stacks` stacks (program counters from `pcs`), each
// with live allocations, and the decoder that fed it (for more frames).
struct FedProcess {
  std::unique_ptr<ApplySink> sink;
  hw::FrameDecoder decoder;
};
FedProcess ProcessWithStacks(size_t stacks, size_t max_stacks = 0,
                             std::vector<uint64_t> (*pcs)(uint64_t) = [](uint64_t i) { return StackPcs(i); }) {
  hw::Limits limits;
  limits.max_stacks_per_process = std::max(max_stacks, stacks + 1);
  limits.max_total_stacks = limits.max_stacks_per_process;
  FedProcess fed{std::make_unique<ApplySink>(limits), {}};
  StreamBuilder b;
  b.Hello(1, 524288).ModulesReset().Module(kModuleStart, kModuleEnd, 0, "/usr/bin/app", "0123456789abcdef");
  for (size_t i = 0; i < stacks; ++i) b.Stack(i + 1, pcs(i));
  for (size_t i = 0; i < stacks; ++i) {
    b.Alloc(0x10000000 + i * 64, 1024 + (i % 7) * 4096, i + 1, i);
    if ((i + 1) % 1000 == 0) b.Flush();
  }
  Feed(b.bytes(), fed.decoder, *fed.sink);
  return fed;
}

// What a busy process sends between two refreshes of the UI: new stacks and
// allocations and frees on the stacks it has.
std::string Churn(size_t first_new_stack, size_t new_stacks, size_t events, size_t stacks, uint64_t seed) {
  StreamBuilder b;
  for (size_t i = 0; i < new_stacks; ++i) b.Stack(first_new_stack + i + 1, StackPcs(first_new_stack + i));
  std::mt19937_64 rng(seed);
  for (size_t n = 0; n < events; ++n) {
    uint64_t stack = 1 + rng() % stacks;
    if (n % 2) {
      b.Free(0x10000000 + (stack - 1) * 64, n);  // the allocation ProcessWithStacks made
    } else {
      b.Alloc(0x80000000 + seed * events * 64 + n * 64, 1024, stack, n);
    }
  }
  b.Flush();
  return b.bytes();
}

// /api/v1/profile and /debug/pprof/heap as the collector serves them after
// the first request: the ProfileCache brings the profile up to date (new
// stacks, new figures), then the tree or the pprof file is made. Between
// iterations (not timed) the process gets 10 new stacks and 1000 events.
template <bool kPprof>
void BM_WarmEndpoint(benchmark::State& state) {
  const auto stacks = static_cast<size_t>(state.range(0));
  FedProcess fed = ProcessWithStacks(stacks, stacks * 2);
  ApplySink& sink = *fed.sink;
  hw::FrameDecoder& decoder = fed.decoder;
  hw::ProfileCache cache;
  // The first request: a full build.
  if constexpr (kPprof) {
    benchmark::DoNotOptimize(cache.Pprof(sink.process(), nullptr, 0, hw::SampleType::kInuseSpace).data());
  } else {
    cache.Get(sink.process(), nullptr, 0);
  }
  size_t bytes = 0, known = stacks;
  uint64_t seed = 1;
  for (auto _ : state) {
    state.PauseTiming();
    Feed(Churn(known, 10, 1000, known, seed++), decoder, sink);
    known += 10;
    state.ResumeTiming();
    std::string body;
    if constexpr (kPprof) {
      body = cache.Pprof(sink.process(), nullptr, 0, hw::SampleType::kInuseSpace);
    } else {
      body = hw::BuildCallTree(cache.Get(sink.process(), nullptr, 0), nullptr, hw::CallTreeOptions{})
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.counters["response_bytes"] = static_cast<double>(bytes);
  state.counters["full_builds"] = static_cast<double>(cache.stats().builds);
}
void BM_ProfileEndpointWarm(benchmark::State& state) { BM_WarmEndpoint<false>(state); }
void BM_PprofEndpointWarm(benchmark::State& state) { BM_WarmEndpoint<true>(state); }
BENCHMARK(BM_ProfileEndpointWarm)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PprofEndpointWarm)->Arg(100000)->Unit(benchmark::kMillisecond);

void BM_ProfileEndpoint(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    hw::ProfileData data = hw::BuildProfileData(fed.sink->process(), nullptr, 0);
    nlohmann::json tree = hw::BuildCallTree(data, nullptr, hw::CallTreeOptions{});
    std::string body = tree.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.counters["response_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_ProfileEndpoint)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

// The first /api/v1/profile of a program-shaped process (as
// tests/e2e/test_collector_support.program_stack_pcs: fixed outer and
// allocator frames, six levels of call sites chosen by i's base-8 digits).
std::vector<uint64_t> ProgramPcs(uint64_t i) {
  std::vector<uint64_t> pcs;
  for (uint64_t k = 0; k < 9; ++k) pcs.push_back(kModuleStart + 16 * k);
  uint64_t prev = 0;
  for (uint64_t level = 0; level < 6; ++level) {
    uint64_t digit = (i >> (3 * level)) & 7;
    pcs.push_back(kModuleStart + 0x100000 + 16 * ((level * 8 + prev) * 8 + digit));
    prev = digit;
  }
  for (uint64_t k = 0; k < 9; ++k) pcs.push_back(kModuleStart + 0x200000 + 16 * k);
  return {pcs.rbegin(), pcs.rend()};  // innermost first
}

void BM_ProfileEndpointProgramCold(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)), 0, ProgramPcs);
  for (auto _ : state) {
    hw::ProfileCache cache;
    std::string body = hw::BuildCallTree(cache.Get(fed.sink->process(), nullptr, 0), nullptr, hw::CallTreeOptions{})
                           .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    benchmark::DoNotOptimize(body.data());
  }
}
BENCHMARK(BM_ProfileEndpointProgramCold)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_BuildProfileData(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    hw::ProfileData data = hw::BuildProfileData(fed.sink->process(), nullptr, 0);
    benchmark::DoNotOptimize(data.samples.data());
  }
}
BENCHMARK(BM_BuildProfileData)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

// The worst case: every stack has program counters of its own (2.4M distinct
// locations and frames at 100k stacks of depth 24).
void BM_BuildProfileDataDistinct(benchmark::State& state) {
  FedProcess fed = ProcessWithStacks(static_cast<size_t>(state.range(0)), 0, [](uint64_t i) {
    std::vector<uint64_t> pcs(kDepth);
    for (uint32_t k = 0; k < kDepth; ++k) pcs[k] = kModuleStart + (i * kDepth + k) * 16;
    return pcs;
  });
  for (auto _ : state) {
    hw::ProfileData data = hw::BuildProfileData(fed.sink->process(), nullptr, 0);
    benchmark::DoNotOptimize(data.samples.data());
  }
}
BENCHMARK(BM_BuildProfileDataDistinct)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_BuildCallTree(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)));
  hw::ProfileData data = hw::BuildProfileData(fed.sink->process(), nullptr, 0);
  size_t nodes_bytes = 0;
  for (auto _ : state) {
    nlohmann::json tree = hw::BuildCallTree(data, nullptr, hw::CallTreeOptions{});
    benchmark::DoNotOptimize(tree);
    nodes_bytes = tree.size();
  }
  benchmark::DoNotOptimize(nodes_bytes);
}
BENCHMARK(BM_BuildCallTree)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_JsonDump(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)));
  hw::ProfileData data = hw::BuildProfileData(fed.sink->process(), nullptr, 0);
  nlohmann::json tree = hw::BuildCallTree(data, nullptr, hw::CallTreeOptions{});
  for (auto _ : state) {
    std::string body = tree.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    benchmark::DoNotOptimize(body.data());
  }
}
BENCHMARK(BM_JsonDump)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PprofEndpoint(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    hw::ProfileData data = hw::BuildProfileData(fed.sink->process(), nullptr, 0);
    std::string body = hw::Gzip(hw::EncodePprof(data, hw::SampleType::kInuseSpace));
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.counters["response_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_PprofEndpoint)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_EncodePprof(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)));
  hw::ProfileData data = hw::BuildProfileData(fed.sink->process(), nullptr, 0);
  for (auto _ : state) {
    std::string pb = hw::EncodePprof(data, hw::SampleType::kInuseSpace);
    benchmark::DoNotOptimize(pb.data());
  }
}
BENCHMARK(BM_EncodePprof)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Gzip(benchmark::State& state) {
  auto fed = ProcessWithStacks(static_cast<size_t>(state.range(0)));
  std::string pb = hw::EncodePprof(hw::BuildProfileData(fed.sink->process(), nullptr, 0), hw::SampleType::kInuseSpace);
  for (auto _ : state) {
    std::string gz = hw::Gzip(pb);
    benchmark::DoNotOptimize(gz.data());
  }
}
BENCHMARK(BM_Gzip)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Heap bytes held per 100k stacks (one live sample each), by stack depth.
void BM_StackMemory(benchmark::State& state) {
  const uint32_t depth = static_cast<uint32_t>(state.range(0));
  const size_t stacks = 100000;
  double held = 0;
  for (auto _ : state) {
    hw::Limits limits;
    limits.max_stacks_per_process = stacks + 1;
    limits.max_total_stacks = stacks + 1;
    StreamBuilder b;
    b.Hello(1, 524288).ModulesReset().Module(kModuleStart, kModuleEnd, 0, "/usr/bin/app", "0123456789abcdef");
    for (size_t i = 0; i < stacks; ++i) b.Stack(i + 1, StackPcs(i, depth));
    for (size_t i = 0; i < stacks; ++i) {
      b.Alloc(0x10000000 + i * 64, 1024, i + 1, i);
      if ((i + 1) % 1000 == 0) b.Flush();
    }
    std::string stream = b.bytes();
    // Small blocks (uordblks) and the big vectors malloc maps directly (hblkhd).
    auto in_use = [] { struct mallinfo2 m = mallinfo2(); return m.uordblks + m.hblkhd; };
    size_t before = in_use();
    {
      ApplySink sink(limits);
      hw::FrameDecoder decoder;
      Feed(stream, decoder, sink);
      held = static_cast<double>(in_use() - before);
      benchmark::DoNotOptimize(sink.process().stacks().data());
    }
  }
  state.counters["heap_bytes_per_100k_stacks"] = held;
  state.counters["bytes_per_stack"] = held / stacks;
}
BENCHMARK(BM_StackMemory)->Arg(8)->Arg(24)->Arg(64)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
