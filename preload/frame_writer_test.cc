#include "frame_writer.h"

#include <string.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

struct Frame {
  wire::FrameHeader header;
  std::vector<uint8_t> payload;
};

std::vector<Frame> Decode(const uint8_t* p, size_t n) {
  std::vector<Frame> frames;
  size_t off = 0;
  while (off < n) {
    Frame f;
    EXPECT_GE(n - off, sizeof(wire::FrameHeader));
    memcpy(&f.header, p + off, sizeof(f.header));
    off += sizeof(f.header);
    EXPECT_LE(f.header.length, n - off);
    f.payload.assign(p + off, p + off + f.header.length);
    off += f.header.length;
    frames.push_back(std::move(f));
  }
  return frames;
}

TEST(FrameWriterTest, EncodesStackEventsAndModule) {
  std::vector<uint8_t> buf(4096);
  FrameWriter w(buf.data(), buf.size());
  uint64_t pcs[] = {0x1111, 0x2222};
  ASSERT_TRUE(w.AppendStack(0xabcdef, pcs, 2));
  wire::EventRecord evs[2] = {{1, 10, 0x5000, 64, 0xabcdef, 123}, {2, 11, 0x5000, 0, 0, 124}};
  ASSERT_TRUE(w.AppendEvents(evs, 2));
  wire::Module m{0x400000, 0x401000, 0x402000, 0x1000, 3, 8, 0};
  const uint8_t id[] = {0xde, 0xad, 0xbe};
  ASSERT_TRUE(w.AppendModule(m, id, "/bin/foo"));

  auto frames = Decode(w.data(), w.size());
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].header.type, uint16_t(wire::FrameType::kStack));
  ASSERT_EQ(frames[0].header.length, sizeof(wire::Stack) + 16);
  wire::Stack s;
  memcpy(&s, frames[0].payload.data(), sizeof(s));
  EXPECT_EQ(s.stack_id, 0xabcdefu);
  EXPECT_EQ(s.depth, 2u);
  uint64_t got_pcs[2];
  memcpy(got_pcs, frames[0].payload.data() + sizeof(s), 16);
  EXPECT_EQ(got_pcs[1], 0x2222u);

  EXPECT_EQ(frames[1].header.type, uint16_t(wire::FrameType::kEvents));
  ASSERT_EQ(frames[1].header.length, sizeof(wire::EventsHeader) + 2 * sizeof(wire::EventRecord));
  wire::EventsHeader eh;
  memcpy(&eh, frames[1].payload.data(), sizeof(eh));
  EXPECT_EQ(eh.count, 2u);
  wire::EventRecord e1;
  memcpy(&e1, frames[1].payload.data() + sizeof(eh) + sizeof(wire::EventRecord), sizeof(e1));
  EXPECT_EQ(e1.kind, 2u);
  EXPECT_EQ(e1.time_ns, 124u);

  EXPECT_EQ(frames[2].header.type, uint16_t(wire::FrameType::kModule));
  ASSERT_EQ(frames[2].header.length, sizeof(wire::Module) + 3 + 8);
  EXPECT_EQ(std::string(frames[2].payload.begin() + sizeof(wire::Module) + 3,
                        frames[2].payload.end()),
            "/bin/foo");
  EXPECT_EQ(frames[2].payload[sizeof(wire::Module)], 0xde);
}

TEST(FrameWriterTest, RefusesWhatDoesNotFitAndWritesNothing) {
  std::vector<uint8_t> buf(100);
  FrameWriter w(buf.data(), buf.size());
  wire::EventRecord evs[3] = {};
  EXPECT_FALSE(w.AppendEvents(evs, 3));  // 8 + 8 + 120 > 100
  EXPECT_EQ(w.size(), 0u);
  EXPECT_TRUE(w.AppendEvents(evs, 2));
  EXPECT_EQ(w.size(), 8u + 8 + 80);
  EXPECT_TRUE(w.AppendEvents(evs, 0));  // an empty batch writes no frame
  EXPECT_EQ(w.size(), 8u + 8 + 80);
  EXPECT_FALSE(w.AppendEvents(evs, wire::kMaxEventsPerFrame + 1));
}

TEST(FrameWriterTest, ConsumeKeepsTheRest) {
  std::vector<uint8_t> buf(256);
  FrameWriter w(buf.data(), buf.size());
  ASSERT_TRUE(w.Append(wire::FrameType::kResyncBegin, "abcdefghijklmnop", 16));
  ASSERT_TRUE(w.Append(wire::FrameType::kResyncEnd, "ABCDEFGHIJKLMNOP", 16));
  w.Consume(24);
  auto frames = Decode(w.data(), w.size());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].header.type, uint16_t(wire::FrameType::kResyncEnd));
}

TEST(FrameWriterTest, OversizedPayloadIsRefused) {
  std::vector<uint8_t> buf(16);
  FrameWriter w(buf.data(), buf.size());
  EXPECT_FALSE(w.Append(wire::FrameType::kStats, buf.data(), wire::kMaxFrameBytes + 1));
}

}  // namespace
}  // namespace heapwatch::preload
