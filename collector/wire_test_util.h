// Builds valid (or deliberately broken) shim byte streams for tests, the
// fuzzer's seeds and benchmarks: the same encoding the shim uses (wire.h).
#ifndef HEAPWATCH_COLLECTOR_WIRE_TEST_UTIL_H_
#define HEAPWATCH_COLLECTOR_WIRE_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collector/config.h"
#include "collector/frame_decoder.h"
#include "collector/process.h"
#include "heapwatch/wire.h"

namespace heapwatch::collector::testing {

class StreamBuilder {
 public:
  StreamBuilder& Hello(uint32_t pid, uint64_t sample_bytes = 524288, uint64_t start_ns = 1,
                       const std::string& exe = "/bin/test");
  StreamBuilder& ModulesReset();
  // `epoch`: Module::epoch as sent (0: an unstamped map, as from older shims).
  StreamBuilder& Module(uint64_t start, uint64_t end, uint64_t load_bias, const std::string& path,
                        const std::string& build_id = "", uint32_t epoch = 0);
  StreamBuilder& Stack(uint64_t id, const std::vector<uint64_t>& pcs);
  StreamBuilder& Alloc(uint64_t address, uint64_t size, uint64_t stack_id, uint64_t time_ns = 1);
  StreamBuilder& Free(uint64_t address, uint64_t time_ns = 2);
  // Pending Alloc/Free records go out as one kEvents frame.
  StreamBuilder& Flush();
  StreamBuilder& ResyncBegin(uint64_t generation = 1);
  StreamBuilder& ResyncEnd(uint64_t generation = 1, uint64_t count = 0);
  StreamBuilder& Stats(const wire::Stats& stats);
  // A raw frame with any type and payload (for malformed input).
  StreamBuilder& Raw(uint16_t type, const std::string& payload, int64_t length_override = -1);

  const std::string& bytes() {
    Flush();
    return out_;
  }

 private:
  void Frame(wire::FrameType type, const std::string& payload);
  std::string out_;
  std::vector<wire::EventRecord> pending_;
};

// Applies a stream to a Process, as an ingest connection does; the Hello
// frame makes the process.
struct ProcessFeeder : FrameSink {
  explicit ProcessFeeder(Limits l = {}) : limits(l), budget(l.max_total_stacks) {}
  void OnHello(const HelloMsg& m) override {
    process = std::make_unique<Process>(m.hello.pid, 0, m, limits, &budget, 0);
  }
  void OnModulesReset() override { process->ResetModules(); }
  void OnModule(const ModuleMsg& m) override { process->AddModule(m); }
  void OnStack(const StackMsg& m) override { process->AddStack(m); }
  void OnEvents(const uint8_t* r, uint32_t n) override { process->ApplyEvents(r, n); }
  void OnResyncBegin(const wire::ResyncMarker&) override { process->BeginResync(); }
  void OnResyncEnd(const wire::ResyncMarker&) override { process->EndResync(); }
  void OnStats(const wire::Stats& s) override { process->SetShimStats(s); }
  // Feeds everything `b` holds (a builder accumulates: use a new one for
  // what comes next).
  DecodeError Feed(StreamBuilder& b) {
    const std::string& bytes = b.bytes();
    return decoder.Feed({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, *this);
  }
  Limits limits;
  size_t budget;
  FrameDecoder decoder;
  std::unique_ptr<Process> process;
};

}  // namespace heapwatch::collector::testing

#endif  // HEAPWATCH_COLLECTOR_WIRE_TEST_UTIL_H_
