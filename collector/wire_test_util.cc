#include "collector/wire_test_util.h"

#include <cstring>

namespace heapwatch::collector::testing {
namespace {
template <typename T>
std::string Bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}
}  // namespace

void StreamBuilder::Frame(wire::FrameType type, const std::string& payload) {
  wire::FrameHeader h{static_cast<uint32_t>(payload.size()), static_cast<uint16_t>(type), 0};
  out_ += Bytes(h);
  out_ += payload;
}

StreamBuilder& StreamBuilder::Raw(uint16_t type, const std::string& payload, int64_t length_override) {
  Flush();
  wire::FrameHeader h{length_override >= 0 ? static_cast<uint32_t>(length_override)
                                           : static_cast<uint32_t>(payload.size()),
                      type, 0};
  out_ += Bytes(h);
  out_ += payload;
  return *this;
}

StreamBuilder& StreamBuilder::Hello(uint32_t pid, uint64_t sample_bytes, uint64_t start_ns,
                                    const std::string& exe) {
  wire::Hello h{wire::kMagic, wire::kVersion, static_cast<uint16_t>(exe.size()), pid, 1,
                sample_bytes, start_ns, 64, 0};
  Frame(wire::FrameType::kHello, Bytes(h) + exe);
  return *this;
}

StreamBuilder& StreamBuilder::ModulesReset() {
  Flush();
  Frame(wire::FrameType::kModulesReset, "");
  return *this;
}

StreamBuilder& StreamBuilder::Module(uint64_t start, uint64_t end, uint64_t load_bias,
                                     const std::string& path, const std::string& build_id,
                                     uint32_t epoch) {
  Flush();
  wire::Module m{load_bias, start, end, 0, static_cast<uint16_t>(build_id.size()),
                 static_cast<uint16_t>(path.size()), epoch};
  Frame(wire::FrameType::kModule, Bytes(m) + build_id + path);
  return *this;
}

StreamBuilder& StreamBuilder::Stack(uint64_t id, const std::vector<uint64_t>& pcs) {
  Flush();
  wire::Stack s{id, static_cast<uint32_t>(pcs.size()), 0};
  std::string payload = Bytes(s);
  for (uint64_t pc : pcs) payload += Bytes(pc);
  Frame(wire::FrameType::kStack, payload);
  return *this;
}

StreamBuilder& StreamBuilder::Alloc(uint64_t address, uint64_t size, uint64_t stack_id, uint64_t time_ns) {
  pending_.push_back({static_cast<uint32_t>(wire::EventKind::kAlloc), 1, address, size, stack_id, time_ns});
  return *this;
}

StreamBuilder& StreamBuilder::Free(uint64_t address, uint64_t time_ns) {
  pending_.push_back({static_cast<uint32_t>(wire::EventKind::kFree), 1, address, 0, 0, time_ns});
  return *this;
}

StreamBuilder& StreamBuilder::Flush() {
  if (pending_.empty()) return *this;
  wire::EventsHeader h{static_cast<uint32_t>(pending_.size()), 0};
  std::string payload = Bytes(h);
  payload.append(reinterpret_cast<const char*>(pending_.data()), pending_.size() * sizeof(wire::EventRecord));
  pending_.clear();
  Frame(wire::FrameType::kEvents, payload);
  return *this;
}

StreamBuilder& StreamBuilder::ResyncBegin(uint64_t generation) {
  Flush();
  Frame(wire::FrameType::kResyncBegin, Bytes(wire::ResyncMarker{generation, 0}));
  return *this;
}

StreamBuilder& StreamBuilder::ResyncEnd(uint64_t generation, uint64_t count) {
  Flush();
  Frame(wire::FrameType::kResyncEnd, Bytes(wire::ResyncMarker{generation, count}));
  return *this;
}

StreamBuilder& StreamBuilder::Stats(const wire::Stats& stats) {
  Flush();
  Frame(wire::FrameType::kStats, Bytes(stats));
  return *this;
}

}  // namespace heapwatch::collector::testing
