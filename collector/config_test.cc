#include "collector/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

namespace heapwatch::collector {
namespace {

std::optional<Config> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "heapwatchd");
  return ParseConfig(static_cast<int>(args.size()), args.data());
}

TEST(ConfigTest, DefaultsFollowTheDesign) {
  auto c = Parse({});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->socket_path, "/run/heapwatch/heapwatch.sock");
  EXPECT_EQ(c->http_host, "127.0.0.1");  // loopback unless told otherwise
  EXPECT_EQ(c->http_port, 7070);
  EXPECT_EQ(c->socket_mode, 0660u);
  EXPECT_TRUE(c->token.empty());
  EXPECT_FALSE(c->memory_limit);
}

TEST(ConfigTest, FlagsAndEnvironment) {
  ::setenv("HEAPWATCH_DATA_DIR", "/env/data", 1);
  ::setenv("HEAPWATCH_MEMORY_LIMIT", "128Mi", 1);
  auto c = Parse({"--http", "0.0.0.0:9000", "--allow-uids", "1000,2000", "--data-dir", "/flag/data"});
  ::unsetenv("HEAPWATCH_DATA_DIR");
  ::unsetenv("HEAPWATCH_MEMORY_LIMIT");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->http_host, "0.0.0.0");
  EXPECT_EQ(c->http_port, 9000);
  EXPECT_EQ(c->data_dir, "/flag/data");  // the flag wins
  EXPECT_EQ(c->memory_limit.value_or(0), 128u << 20);
  EXPECT_EQ(c->allow_uids, (std::vector<uint32_t>{1000, 2000}));
}

TEST(ConfigTest, TokenComesFromAFile) {
  std::string path = "/tmp/hw-config-token";
  std::ofstream(path) << "s3cret\n";
  auto c = Parse({"--token-file", path.c_str()});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->token, "s3cret");
  std::ofstream(path) << "";
  EXPECT_THROW(Parse({"--token-file", path.c_str()}), std::runtime_error);
  EXPECT_THROW(Parse({"--token-file", "/nonexistent/token"}), std::runtime_error);
}

TEST(ConfigTest, BadValuesAreRejectedWithAMessage) {
  EXPECT_THROW(Parse({"--http", "nohost"}), std::runtime_error);
  EXPECT_THROW(Parse({"--http", "h:99999"}), std::runtime_error);
  EXPECT_THROW(Parse({"--socket-mode", "999"}), std::runtime_error);
  EXPECT_THROW(Parse({"--memory-limit", "lots"}), std::runtime_error);
  EXPECT_THROW(Parse({"--poll-interval", "0"}), std::runtime_error);
  EXPECT_THROW(Parse({"--no-such-flag"}), std::runtime_error);
  EXPECT_THROW(Parse({"--allow-uids", "x"}), std::runtime_error);
}

TEST(ConfigTest, ByteSizes) {
  EXPECT_EQ(ParseByteSize("134217728"), 134217728u);
  EXPECT_EQ(ParseByteSize("128Mi"), 134217728u);
  EXPECT_EQ(ParseByteSize("1Gi"), 1073741824u);
  EXPECT_EQ(ParseByteSize("100M"), 100000000u);
  EXPECT_FALSE(ParseByteSize("12XB"));
  EXPECT_FALSE(ParseByteSize("-5"));
  EXPECT_FALSE(ParseByteSize(""));
}

}  // namespace
}  // namespace heapwatch::collector
