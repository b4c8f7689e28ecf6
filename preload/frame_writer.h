// Encodes wire frames (wire.h) into a caller-owned byte buffer. No heap, no
// I/O: the sender owns the buffer and the socket. Not thread safe.
#ifndef HEAPWATCH_PRELOAD_FRAME_WRITER_H_
#define HEAPWATCH_PRELOAD_FRAME_WRITER_H_

#include <stddef.h>
#include <stdint.h>

#include <heapwatch/wire.h>

namespace heapwatch::preload {

class FrameWriter {
 public:
  FrameWriter(uint8_t* buffer, size_t capacity) : buf_(buffer), cap_(capacity) {}

  // Appends one frame whose payload is the concatenation of the given parts
  // (null parts are skipped). False, with nothing written, if it does not fit
  // or the payload exceeds wire::kMaxFrameBytes.
  bool Append(wire::FrameType type, const void* a, size_t na, const void* b = nullptr,
              size_t nb = 0, const void* c = nullptr, size_t nc = 0);

  bool AppendStack(uint64_t stack_id, const uint64_t* pcs, uint32_t depth);
  bool AppendEvents(const wire::EventRecord* events, uint32_t count);
  bool AppendModule(const wire::Module& m, const uint8_t* build_id, const char* path);
  // Appends bytes that already are whole encoded frames (from another writer).
  bool AppendRaw(const uint8_t* frames, size_t n);

  // Bytes a frame with `payload` bytes needs.
  static size_t FrameBytes(size_t payload) { return sizeof(wire::FrameHeader) + payload; }

  const uint8_t* data() const { return buf_; }
  size_t size() const { return len_; }
  size_t available() const { return cap_ - len_; }
  void Clear() { len_ = 0; }
  // Drops the first n bytes (after a partial send).
  void Consume(size_t n);

 private:
  uint8_t* buf_;
  size_t cap_;
  size_t len_ = 0;
};

}  // namespace heapwatch::preload

#endif  // HEAPWATCH_PRELOAD_FRAME_WRITER_H_
