// libFuzzer target: arbitrary bytes, fed in arbitrary chunks, through the
// frame decoder into a Process. Nothing may crash, leak or trip a sanitizer,
// and the process model's invariants must hold whatever arrives.
//   scripts/fuzz.sh [SECONDS]
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>

#include "collector/frame_decoder.h"
#include "collector/process.h"
#include "collector/wire_test_util.h"

namespace {
using namespace heapwatch::collector;

class Sink : public FrameSink {
 public:
  void OnHello(const HelloMsg& msg) override {
    process = std::make_unique<Process>(1, 0, msg, limits, &budget, 0.0);
  }
  void OnModulesReset() override { process->ResetModules(); }
  void OnModule(const ModuleMsg& msg) override { process->AddModule(msg); }
  void OnStack(const StackMsg& msg) override {
    if (msg.depth == 0 || msg.depth > heapwatch::wire::kMaxFrames) std::abort();
    process->AddStack(msg);
  }
  void OnEvents(const uint8_t* records, uint32_t count) override { process->ApplyEvents(records, count); }
  void OnResyncBegin(const heapwatch::wire::ResyncMarker&) override { process->BeginResync(); }
  void OnResyncEnd(const heapwatch::wire::ResyncMarker&) override { process->EndResync(); }
  void OnStats(const heapwatch::wire::Stats& stats) override { process->SetShimStats(stats); }

  Limits limits = [] {
    Limits l;
    l.max_stacks_per_process = 64;
    l.max_live_samples_per_process = 256;
    return l;
  }();
  size_t budget = 128;
  std::unique_ptr<Process> process;
};

void WriteSeeds(const char* dir) {
  testing::StreamBuilder good;
  good.Hello(7, 4096).ModulesReset().Module(0x1000, 0x2000, 0, "/bin/app", "\x01\x02")
      .Stack(11, {0x1100, 0x1200}).Alloc(0xa0, 100, 11).Alloc(0xb0, 5000, 11).Free(0xa0)
      .ResyncBegin().Alloc(0xb0, 5000, 11).ResyncEnd(1, 1).Stats({});
  std::ofstream(std::string(dir) + "/valid-session", std::ios::binary) << good.bytes();
  testing::StreamBuilder garbage;
  garbage.Hello(7).Raw(4, "short");
  std::ofstream(std::string(dir) + "/bad-stack", std::ios::binary) << garbage.bytes();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("HEAPWATCH_FUZZ_SEEDS")) WriteSeeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Sink sink;
  FrameDecoder decoder;
  // The first byte picks a chunk size, so frame boundaries land anywhere.
  size_t chunk = size ? 1 + data[0] % 64 : 1;
  for (size_t pos = 1; pos < size; pos += chunk) {
    size_t n = std::min(chunk, size - pos);
    if (decoder.Feed({data + pos, n}, sink) != DecodeError::kNone) break;
  }
  if (sink.process) {
    // Invariants: live samples per stack add up; nothing negative.
    uint64_t live = 0;
    for (const auto& s : sink.process->stacks()) {
      live += s.stats.live_samples;
      if (s.stats.live_bytes < -1e-3 || s.stats.live_objects < -1e-6) std::abort();
    }
    if (live != sink.process->live_samples()) std::abort();
    if (sink.process->stacks().size() > sink.limits.max_stacks_per_process + 1) std::abort();
    if (sink.process->live_samples() > sink.limits.max_live_samples_per_process) std::abort();
    // Modules: the loaded ones, those the last map dropped and the retired ones kept.
    const ModuleHistory& modules = sink.process->module_history();
    if (modules.loaded() > ModuleHistory::kMaxLoaded ||
        modules.all().size() > 2 * ModuleHistory::kMaxLoaded + ModuleHistory::kDefaultMaxRetired) {
      std::abort();
    }
  }
  return 0;
}
