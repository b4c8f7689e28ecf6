#include "collector/frame_decoder.h"

#include <cstring>

namespace heapwatch::collector {
namespace {

template <typename T>
T Load(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

const char* DecodeErrorName(DecodeError error) {
  switch (error) {
    case DecodeError::kNone: return "none";
    case DecodeError::kFrameTooLarge: return "frame_too_large";
    case DecodeError::kUnknownType: return "unknown_type";
    case DecodeError::kBadLength: return "bad_length";
    case DecodeError::kBadMagic: return "bad_magic";
    case DecodeError::kBadVersion: return "bad_version";
    case DecodeError::kHelloNotFirst: return "hello_not_first";
    case DecodeError::kDuplicateHello: return "duplicate_hello";
    case DecodeError::kBadModule: return "bad_module";
    case DecodeError::kBadStack: return "bad_stack";
    case DecodeError::kBadEvents: return "bad_events";
    case DecodeError::kBadEventKind: return "bad_event_kind";
    case DecodeError::kBadResync: return "bad_resync";
    case DecodeError::kCount: break;
  }
  return "unknown";
}

uint64_t StackMsg::pc(uint32_t i) const { return Load<uint64_t>(pcs + 8ull * i); }

DecodeError FrameDecoder::Feed(std::span<const uint8_t> data, FrameSink& sink) {
  if (error_ != DecodeError::kNone) return error_;
  if (pending_.empty()) {
    // Common case: whole frames per read, decoded from the caller's bytes.
    size_t used = DecodeAll(data.data(), data.size(), sink);
    if (error_ == DecodeError::kNone) pending_.assign(data.begin() + used, data.end());
  } else {
    pending_.insert(pending_.end(), data.begin(), data.end());
    size_t used = DecodeAll(pending_.data(), pending_.size(), sink);
    if (error_ == DecodeError::kNone) pending_.erase(pending_.begin(), pending_.begin() + used);
  }
  if (error_ != DecodeError::kNone) pending_.clear();
  return error_;
}

size_t FrameDecoder::DecodeAll(const uint8_t* data, size_t size, FrameSink& sink) {
  size_t used = 0;
  while (size - used >= sizeof(wire::FrameHeader)) {
    auto header = Load<wire::FrameHeader>(data + used);
    if (header.length > wire::kMaxFrameBytes) {
      error_ = DecodeError::kFrameTooLarge;
      return used;
    }
    if (size - used - sizeof(header) < header.length) break;
    error_ = DecodeFrame(header, data + used + sizeof(header), sink);
    if (error_ != DecodeError::kNone) return used;
    ++frames_;
    used += sizeof(header) + header.length;
  }
  return used;
}

DecodeError FrameDecoder::DecodeFrame(const wire::FrameHeader& header, const uint8_t* payload,
                                      FrameSink& sink) {
  const uint32_t n = header.length;
  auto type = static_cast<wire::FrameType>(header.type);
  if (type != wire::FrameType::kHello && !seen_hello_) {
    // Unknown types are reported as such even before the hello.
    if (header.type < 1 || header.type > 8) return DecodeError::kUnknownType;
    return DecodeError::kHelloNotFirst;
  }
  switch (type) {
    case wire::FrameType::kHello: {
      if (seen_hello_) return DecodeError::kDuplicateHello;
      if (n < sizeof(wire::Hello)) return DecodeError::kBadLength;
      HelloMsg msg{Load<wire::Hello>(payload), {}};
      if (msg.hello.magic != wire::kMagic) return DecodeError::kBadMagic;
      if (msg.hello.version != wire::kVersion) return DecodeError::kBadVersion;
      if (msg.hello.exe_len > wire::kMaxPathBytes || n != sizeof(wire::Hello) + msg.hello.exe_len) {
        return DecodeError::kBadLength;
      }
      if (msg.hello.sample_bytes == 0) return DecodeError::kBadLength;
      msg.exe = {reinterpret_cast<const char*>(payload + sizeof(wire::Hello)), msg.hello.exe_len};
      seen_hello_ = true;
      sink.OnHello(msg);
      return DecodeError::kNone;
    }
    case wire::FrameType::kModulesReset:
      if (n != 0) return DecodeError::kBadLength;
      sink.OnModulesReset();
      return DecodeError::kNone;
    case wire::FrameType::kModule: {
      if (n < sizeof(wire::Module)) return DecodeError::kBadLength;
      ModuleMsg msg{Load<wire::Module>(payload), {}, {}};
      const auto& m = msg.module;
      if (m.build_id_len > wire::kMaxBuildIdBytes || m.path_len > wire::kMaxPathBytes ||
          n != sizeof(wire::Module) + m.build_id_len + m.path_len || m.end < m.start) {
        return DecodeError::kBadModule;
      }
      const char* text = reinterpret_cast<const char*>(payload + sizeof(wire::Module));
      msg.build_id = {text, m.build_id_len};
      msg.path = {text + m.build_id_len, m.path_len};
      sink.OnModule(msg);
      return DecodeError::kNone;
    }
    case wire::FrameType::kStack: {
      if (n < sizeof(wire::Stack)) return DecodeError::kBadLength;
      auto s = Load<wire::Stack>(payload);
      if (s.depth == 0 || s.depth > wire::kMaxFrames || n != sizeof(wire::Stack) + 8ull * s.depth ||
          s.stack_id == 0) {
        return DecodeError::kBadStack;
      }
      sink.OnStack(StackMsg{s.stack_id, payload + sizeof(wire::Stack), s.depth});
      return DecodeError::kNone;
    }
    case wire::FrameType::kEvents: {
      if (n < sizeof(wire::EventsHeader)) return DecodeError::kBadLength;
      auto h = Load<wire::EventsHeader>(payload);
      if (h.count > wire::kMaxEventsPerFrame ||
          n != sizeof(wire::EventsHeader) + uint64_t{h.count} * sizeof(wire::EventRecord)) {
        return DecodeError::kBadEvents;
      }
      const uint8_t* records = payload + sizeof(wire::EventsHeader);
      for (uint32_t i = 0; i < h.count; ++i) {
        auto kind = Load<uint32_t>(records + i * sizeof(wire::EventRecord));
        if (kind != static_cast<uint32_t>(wire::EventKind::kAlloc) &&
            kind != static_cast<uint32_t>(wire::EventKind::kFree)) {
          return DecodeError::kBadEventKind;
        }
      }
      sink.OnEvents(records, h.count);
      return DecodeError::kNone;
    }
    case wire::FrameType::kResyncBegin:
    case wire::FrameType::kResyncEnd: {
      if (n != sizeof(wire::ResyncMarker)) return DecodeError::kBadResync;
      auto marker = Load<wire::ResyncMarker>(payload);
      if (type == wire::FrameType::kResyncBegin) {
        sink.OnResyncBegin(marker);
      } else {
        sink.OnResyncEnd(marker);
      }
      return DecodeError::kNone;
    }
    case wire::FrameType::kStats:
      if (n != sizeof(wire::Stats)) return DecodeError::kBadLength;
      sink.OnStats(Load<wire::Stats>(payload));
      return DecodeError::kNone;
  }
  return DecodeError::kUnknownType;
}

}  // namespace heapwatch::collector
