#include "frame_writer.h"

#include <string.h>

namespace heapwatch::preload {

bool FrameWriter::Append(wire::FrameType type, const void* a, size_t na, const void* b,
                         size_t nb, const void* c, size_t nc) {
  size_t payload = (a ? na : 0) + (b ? nb : 0) + (c ? nc : 0);
  if (payload > wire::kMaxFrameBytes || FrameBytes(payload) > available()) return false;
  wire::FrameHeader h{static_cast<uint32_t>(payload), static_cast<uint16_t>(type), 0};
  uint8_t* p = buf_ + len_;
  memcpy(p, &h, sizeof(h));
  p += sizeof(h);
  if (a && na) { memcpy(p, a, na); p += na; }
  if (b && nb) { memcpy(p, b, nb); p += nb; }
  if (c && nc) { memcpy(p, c, nc); p += nc; }
  len_ += FrameBytes(payload);
  return true;
}

bool FrameWriter::AppendStack(uint64_t stack_id, const uint64_t* pcs, uint32_t depth) {
  if (depth > wire::kMaxFrames) depth = wire::kMaxFrames;
  wire::Stack s{stack_id, depth, 0};
  return Append(wire::FrameType::kStack, &s, sizeof(s), pcs, depth * sizeof(uint64_t));
}

bool FrameWriter::AppendEvents(const wire::EventRecord* events, uint32_t count) {
  if (count == 0) return true;
  if (count > wire::kMaxEventsPerFrame) return false;
  wire::EventsHeader h{count, 0};
  return Append(wire::FrameType::kEvents, &h, sizeof(h), events,
                count * sizeof(wire::EventRecord));
}

bool FrameWriter::AppendModule(const wire::Module& m, const uint8_t* build_id, const char* path) {
  return Append(wire::FrameType::kModule, &m, sizeof(m), build_id, m.build_id_len, path,
                m.path_len);
}

bool FrameWriter::AppendRaw(const uint8_t* frames, size_t n) {
  if (n > available()) return false;
  memcpy(buf_ + len_, frames, n);
  len_ += n;
  return true;
}

void FrameWriter::Consume(size_t n) {
  if (n >= len_) {
    len_ = 0;
    return;
  }
  memmove(buf_, buf_ + n, len_ - n);
  len_ -= n;
}

}  // namespace heapwatch::preload
