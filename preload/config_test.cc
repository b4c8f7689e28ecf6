#include "config.h"

#include <string.h>

#include <map>
#include <string>

#include <gtest/gtest.h>

namespace heapwatch::preload {
namespace {

std::map<std::string, std::string> g_env;
const char* FakeGetenv(const char* name) {
  auto it = g_env.find(name);
  return it == g_env.end() ? nullptr : it->second.c_str();
}

Config Parse(std::map<std::string, std::string> env) {
  g_env = std::move(env);
  Config c;
  ParseConfig(FakeGetenv, &c);
  return c;
}

TEST(ConfigTest, Defaults) {
  Config c = Parse({});
  EXPECT_EQ(c.sample_bytes, 524288u);
  EXPECT_EQ(c.max_frames, 64u);
  EXPECT_FALSE(c.disabled);
  EXPECT_FALSE(c.frame_pointers);
  EXPECT_EQ(c.unwind_caches, 32u);
  EXPECT_STREQ(c.socket_path, "/run/heapwatch/heapwatch.sock");
  EXPECT_EQ(c.table_slots, 1u << 16);
  EXPECT_EQ(c.ring_slots, 1u << 13);
}

TEST(ConfigTest, ReadsEverything) {
  Config c = Parse({{"HEAPWATCH_SAMPLE_BYTES", "1"}, {"HEAPWATCH_MAX_FRAMES", "1000"},
                    {"HEAPWATCH_DISABLE", "1"}, {"HEAPWATCH_UNWIND", "fp"},
                    {"HEAPWATCH_SOCKET", "/tmp/x.sock"}, {"HEAPWATCH_TABLE_SLOTS", "5000"},
                    {"HEAPWATCH_RING_SLOTS", "100"}, {"HEAPWATCH_UNWIND_CACHES", "0"}});
  EXPECT_EQ(c.sample_bytes, 1u);
  EXPECT_EQ(c.max_frames, 256u);  // clamped to wire::kMaxFrames
  EXPECT_TRUE(c.disabled);
  EXPECT_TRUE(c.frame_pointers);
  EXPECT_STREQ(c.socket_path, "/tmp/x.sock");
  EXPECT_EQ(c.table_slots, 8192u);
  EXPECT_EQ(c.ring_slots, 128u);
  EXPECT_EQ(c.unwind_caches, 0u);
  EXPECT_EQ(Parse({{"HEAPWATCH_UNWIND_CACHES", "100000"}}).unwind_caches, 4096u);
}

TEST(ConfigTest, EveryAllocationModeGetsBigTables) {
  Config c = Parse({{"HEAPWATCH_SAMPLE_BYTES", "1"}});
  EXPECT_EQ(c.table_slots, 1u << 22);
  EXPECT_EQ(c.ring_slots, 1u << 18);
  EXPECT_EQ(c.unwind_caches, 4096u);  // no cap: every thread samples constantly
  EXPECT_EQ(Parse({{"HEAPWATCH_SAMPLE_BYTES", "1"}, {"HEAPWATCH_UNWIND_CACHES", "8"}}).unwind_caches, 8u);
}

TEST(ConfigTest, MalformedValuesFallBackToDefaults) {
  Config c = Parse({{"HEAPWATCH_SAMPLE_BYTES", "12abc"}, {"HEAPWATCH_MAX_FRAMES", "-3"},
                    {"HEAPWATCH_DISABLE", "0"}, {"HEAPWATCH_SAMPLE_BYTES", "0"},
                    {"HEAPWATCH_SOCKET", std::string(200, 'x')}, {"HEAPWATCH_UNWIND_CACHES", "-1"}});
  EXPECT_EQ(c.sample_bytes, 524288u);
  EXPECT_EQ(c.unwind_caches, 32u);
  EXPECT_EQ(c.max_frames, 64u);
  EXPECT_FALSE(c.disabled);
  EXPECT_STREQ(c.socket_path, "/run/heapwatch/heapwatch.sock");
  c = Parse({{"HEAPWATCH_SAMPLE_BYTES", "99999999999999999999999"}});
  EXPECT_EQ(c.sample_bytes, 524288u);
}

TEST(ConfigTest, RoundUpPow2) {
  EXPECT_EQ(RoundUpPow2(0, 64, 1024), 64u);
  EXPECT_EQ(RoundUpPow2(65, 64, 1024), 128u);
  EXPECT_EQ(RoundUpPow2(128, 64, 1024), 128u);
  EXPECT_EQ(RoundUpPow2(5000, 64, 1024), 1024u);
}

}  // namespace
}  // namespace heapwatch::preload
