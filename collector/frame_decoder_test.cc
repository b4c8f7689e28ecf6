#include "collector/frame_decoder.h"

#include <gtest/gtest.h>

#include "collector/wire_test_util.h"

namespace heapwatch::collector {
namespace {

using testing::StreamBuilder;

struct Recorder : FrameSink {
  void OnHello(const HelloMsg& m) override { log += "hello(" + std::string(m.exe) + ")"; }
  void OnModulesReset() override { log += "reset"; }
  void OnModule(const ModuleMsg& m) override { log += "module(" + std::string(m.path) + ")"; }
  void OnStack(const StackMsg& m) override {
    log += "stack(" + std::to_string(m.stack_id) + ":" + std::to_string(m.depth) + ")";
    last_pc = m.pc(m.depth - 1);
  }
  void OnEvents(const uint8_t*, uint32_t n) override { log += "events(" + std::to_string(n) + ")"; }
  void OnResyncBegin(const wire::ResyncMarker&) override { log += "rb"; }
  void OnResyncEnd(const wire::ResyncMarker&) override { log += "re"; }
  void OnStats(const wire::Stats&) override { log += "stats"; }
  std::string log;
  uint64_t last_pc = 0;
};

DecodeError FeedAll(const std::string& bytes, Recorder& r, size_t chunk = 0) {
  FrameDecoder d;
  if (chunk == 0) chunk = bytes.size() ? bytes.size() : 1;
  DecodeError e = DecodeError::kNone;
  for (size_t i = 0; i < bytes.size() && e == DecodeError::kNone; i += chunk) {
    auto n = std::min(chunk, bytes.size() - i);
    e = d.Feed({reinterpret_cast<const uint8_t*>(bytes.data()) + i, n}, r);
  }
  return e;
}

std::string ValidSession() {
  StreamBuilder b;
  b.Hello(42, 4096, 7, "/usr/bin/app").ModulesReset().Module(0x1000, 0x5000, 0, "/usr/bin/app", "ab")
      .Stack(9, {0x1010, 0x1020, 0x1030}).Alloc(0x10, 64, 9).Free(0x10).ResyncBegin().ResyncEnd()
      .Stats({});
  return b.bytes();
}

TEST(FrameDecoderTest, DecodesAValidSessionWhateverTheChunking) {
  const std::string expected =
      "hello(/usr/bin/app)resetmodule(/usr/bin/app)stack(9:3)events(2)rbrestats";
  for (size_t chunk : {0, 1, 3, 7, 8, 64}) {
    Recorder r;
    EXPECT_EQ(FeedAll(ValidSession(), r, chunk), DecodeError::kNone) << chunk;
    EXPECT_EQ(r.log, expected) << "chunk " << chunk;
    EXPECT_EQ(r.last_pc, 0x1030u);
  }
}

TEST(FrameDecoderTest, PartialFrameIsHeldUntilComplete) {
  std::string bytes = ValidSession();
  FrameDecoder d;
  Recorder r;
  auto data = reinterpret_cast<const uint8_t*>(bytes.data());
  ASSERT_EQ(d.Feed({data, 20}, r), DecodeError::kNone);
  EXPECT_EQ(r.log, "");  // the hello is 48+ bytes: nothing delivered yet
  EXPECT_EQ(d.buffered_bytes(), 20u);
  ASSERT_EQ(d.Feed({data + 20, bytes.size() - 20}, r), DecodeError::kNone);
  EXPECT_EQ(d.buffered_bytes(), 0u);
  EXPECT_NE(r.log.find("stats"), std::string::npos);
}

TEST(FrameDecoderTest, RejectsFramesBeforeHello) {
  Recorder r;
  EXPECT_EQ(FeedAll(StreamBuilder().ModulesReset().bytes(), r), DecodeError::kHelloNotFirst);
  EXPECT_EQ(r.log, "");
}

TEST(FrameDecoderTest, RejectsBadMagicAndVersion) {
  wire::Hello h{0xdeadbeef, wire::kVersion, 0, 1, 1, 4096, 1, 64, 0};
  std::string payload(reinterpret_cast<char*>(&h), sizeof h);
  Recorder r;
  EXPECT_EQ(FeedAll(StreamBuilder().Raw(1, payload).bytes(), r), DecodeError::kBadMagic);
  h.magic = wire::kMagic;
  h.version = 99;
  payload.assign(reinterpret_cast<char*>(&h), sizeof h);
  EXPECT_EQ(FeedAll(StreamBuilder().Raw(1, payload).bytes(), r), DecodeError::kBadVersion);
}

TEST(FrameDecoderTest, RejectsOversizedFrameBeforeBufferingIt) {
  Recorder r;
  FrameDecoder d;
  std::string bytes = StreamBuilder().Hello(1).Raw(5, "", wire::kMaxFrameBytes + 1).bytes();
  EXPECT_EQ(d.Feed({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, r),
            DecodeError::kFrameTooLarge);
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FrameDecoderTest, ErrorsAreStickyAndNamed) {
  Recorder r;
  FrameDecoder d;
  std::string bad = StreamBuilder().Hello(1).Raw(77, "").bytes();
  auto data = reinterpret_cast<const uint8_t*>(bad.data());
  EXPECT_EQ(d.Feed({data, bad.size()}, r), DecodeError::kUnknownType);
  std::string good = ValidSession();
  EXPECT_EQ(d.Feed({reinterpret_cast<const uint8_t*>(good.data()), good.size()}, r),
            DecodeError::kUnknownType);
  EXPECT_STREQ(DecodeErrorName(DecodeError::kUnknownType), "unknown_type");
  for (int e = 0; e < static_cast<int>(DecodeError::kCount); ++e) {
    EXPECT_STRNE(DecodeErrorName(static_cast<DecodeError>(e)), "unknown") << e;
  }
}

TEST(FrameDecoderTest, ValidatesEachFrameType) {
  struct Case {
    std::string bytes;
    DecodeError want;
  };
  wire::Stack deep{5, wire::kMaxFrames + 1, 0};
  std::string deep_payload(reinterpret_cast<char*>(&deep), sizeof deep);
  deep_payload.append(8 * (wire::kMaxFrames + 1), '\0');
  wire::EventsHeader lying{3, 0};
  std::string lying_events(reinterpret_cast<char*>(&lying), sizeof lying);
  lying_events.append(sizeof(wire::EventRecord), '\0');
  wire::EventsHeader one{1, 0};
  wire::EventRecord bad_kind{9, 0, 0, 0, 0, 0};
  std::string bad_kind_events = std::string(reinterpret_cast<char*>(&one), sizeof one) +
                                std::string(reinterpret_cast<char*>(&bad_kind), sizeof bad_kind);
  wire::Module inverted{0, 0x2000, 0x1000, 0, 0, 0, 0};
  Case cases[] = {
      {StreamBuilder().Hello(1).Hello(1).bytes(), DecodeError::kDuplicateHello},
      {StreamBuilder().Hello(1).Raw(4, deep_payload).bytes(), DecodeError::kBadStack},
      {StreamBuilder().Hello(1).Stack(0, {1}).bytes(), DecodeError::kBadStack},
      {StreamBuilder().Hello(1).Raw(5, lying_events).bytes(), DecodeError::kBadEvents},
      {StreamBuilder().Hello(1).Raw(5, bad_kind_events).bytes(), DecodeError::kBadEventKind},
      {StreamBuilder().Hello(1).Raw(3, std::string(reinterpret_cast<char*>(&inverted), sizeof inverted)).bytes(),
       DecodeError::kBadModule},
      {StreamBuilder().Hello(1).Raw(2, "x").bytes(), DecodeError::kBadLength},
      {StreamBuilder().Hello(1).Raw(6, "short").bytes(), DecodeError::kBadResync},
      {StreamBuilder().Hello(1).Raw(8, "short").bytes(), DecodeError::kBadLength},
  };
  for (const auto& c : cases) {
    Recorder r;
    EXPECT_EQ(FeedAll(c.bytes, r), c.want) << DecodeErrorName(c.want);
  }
}

}  // namespace
}  // namespace heapwatch::collector
