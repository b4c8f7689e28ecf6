// Decodes the shim's byte stream (wire.h) into typed messages. Pure: no I/O,
// no clock, no global state, so it is unit-tested and fuzzed directly.
//
// Every frame is length-checked and validated before any of it is delivered:
// the sink sees a frame whole or not at all. The first error stops decoding
// for good; the caller closes the connection and counts the reason. Messages
// handed to the sink point into the decoder's buffer and are valid only during
// the call.
#ifndef HEAPWATCH_COLLECTOR_FRAME_DECODER_H_
#define HEAPWATCH_COLLECTOR_FRAME_DECODER_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "heapwatch/wire.h"

namespace heapwatch::collector {

enum class DecodeError {
  kNone = 0,
  kFrameTooLarge,
  kUnknownType,
  kBadLength,       // payload size does not fit the frame type
  kBadMagic,
  kBadVersion,
  kHelloNotFirst,
  kDuplicateHello,
  kBadModule,
  kBadStack,
  kBadEvents,
  kBadEventKind,
  kBadResync,
  kCount,
};

// Stable, metric-friendly names ("frame_too_large", ...).
const char* DecodeErrorName(DecodeError error);

struct HelloMsg {
  wire::Hello hello;
  std::string_view exe;
};

struct ModuleMsg {
  wire::Module module;
  std::string_view build_id;
  std::string_view path;
};

struct StackMsg {
  uint64_t stack_id;
  const uint8_t* pcs;  // `depth` little-endian uint64_t, possibly unaligned
  uint32_t depth;
  uint64_t pc(uint32_t i) const;
};

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual void OnHello(const HelloMsg& msg) = 0;
  virtual void OnModulesReset() = 0;
  virtual void OnModule(const ModuleMsg& msg) = 0;
  virtual void OnStack(const StackMsg& msg) = 0;
  // `records` are validated (known kinds); may be unaligned, so copy out.
  virtual void OnEvents(const uint8_t* records, uint32_t count) = 0;
  virtual void OnResyncBegin(const wire::ResyncMarker& marker) = 0;
  virtual void OnResyncEnd(const wire::ResyncMarker& marker) = 0;
  virtual void OnStats(const wire::Stats& stats) = 0;
};

class FrameDecoder {
 public:
  // Appends bytes and delivers every complete frame. Returns the first error;
  // after an error every later call returns it again and delivers nothing.
  DecodeError Feed(std::span<const uint8_t> data, FrameSink& sink);

  uint64_t frames_decoded() const { return frames_; }
  size_t buffered_bytes() const { return pending_.size(); }

 private:
  // Decodes whole frames from data; returns the bytes consumed.
  size_t DecodeAll(const uint8_t* data, size_t size, FrameSink& sink);
  DecodeError DecodeFrame(const wire::FrameHeader& header, const uint8_t* payload, FrameSink& sink);

  std::vector<uint8_t> pending_;  // a partial frame awaiting more bytes
  bool seen_hello_ = false;
  DecodeError error_ = DecodeError::kNone;
  uint64_t frames_ = 0;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_FRAME_DECODER_H_
