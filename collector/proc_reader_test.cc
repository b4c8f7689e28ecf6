#include "collector/proc_reader.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace heapwatch::collector {
namespace {
namespace fs = std::filesystem;

class ProcReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hw-proc-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(root_ + "/" + rel).parent_path());
    std::ofstream(root_ + "/" + rel) << text;
  }
  std::string root_;
};

TEST_F(ProcReaderTest, RssAndExistence) {
  Write("proc/7/status", "Name:\tapp\nVmRSS:\t  2048 kB\nThreads:\t3\n");
  Write("proc/7/stat", "7 (app) S 1 2 3");
  Write("proc/8/stat", "8 (zombie) Z 1 2 3");
  ProcReader r(root_ + "/proc", root_ + "/cg");
  EXPECT_TRUE(r.Exists(7));
  EXPECT_FALSE(r.Exists(8));  // a zombie has exited
  EXPECT_FALSE(r.Exists(9));
  EXPECT_EQ(r.Rss(7).value_or(0), 2048u * 1024);
  EXPECT_FALSE(r.Rss(9));
}

TEST_F(ProcReaderTest, CgroupV1MemoryController) {
  Write("proc/7/cgroup", "12:pids:/x\n5:memory:/kubepods/pod1/abc\n0::/\n");
  Write("cg/memory/kubepods/pod1/abc/memory.usage_in_bytes", "1000\n");
  Write("cg/memory/kubepods/pod1/abc/memory.limit_in_bytes", "134217728\n");
  ProcReader r(root_ + "/proc", root_ + "/cg");
  CgroupMemory m = r.Cgroup(7);
  EXPECT_EQ(m.version, 1);
  EXPECT_EQ(m.usage.value_or(0), 1000u);
  EXPECT_EQ(m.limit.value_or(0), 134217728u);
}

TEST_F(ProcReaderTest, CgroupV2AndUnlimited) {
  Write("proc/7/cgroup", "0::/kubepods.slice/app.scope\n");
  Write("cg/kubepods.slice/app.scope/memory.current", "5000\n");
  Write("cg/kubepods.slice/app.scope/memory.max", "max\n");
  ProcReader r(root_ + "/proc", root_ + "/cg");
  CgroupMemory m = r.Cgroup(7);
  EXPECT_EQ(m.version, 2);
  EXPECT_EQ(m.usage.value_or(0), 5000u);
  EXPECT_FALSE(m.limit);  // "max" means no limit
}

TEST_F(ProcReaderTest, FallsBackToTheContainersOwnView) {
  // In another cgroup namespace the path is not under our mount; the
  // application's root (/proc/<pid>/root) shows its own cgroup at the top.
  Write("proc/7/cgroup", "0::/\n");
  Write("proc/7/root/sys/fs/cgroup/memory.current", "777\n");
  Write("proc/7/root/sys/fs/cgroup/memory.max", "1048576\n");
  ProcReader r(root_ + "/proc", root_ + "/nonexistent");
  CgroupMemory m = r.Cgroup(7);
  EXPECT_EQ(m.version, 2);
  EXPECT_EQ(m.usage.value_or(0), 777u);
  EXPECT_EQ(m.limit.value_or(0), 1048576u);
}

TEST_F(ProcReaderTest, V1UnlimitedAndGarbage) {
  EXPECT_FALSE(ParseCgroupLimit("9223372036854771712\n"));
  EXPECT_FALSE(ParseCgroupLimit("max"));
  EXPECT_FALSE(ParseCgroupLimit("garbage"));
  EXPECT_EQ(ParseCgroupLimit("4096").value_or(0), 4096u);
  ProcReader r(root_ + "/proc", root_ + "/cg");
  EXPECT_EQ(r.Cgroup(12345).version, 0);  // no such process: nothing, no crash
}

}  // namespace
}  // namespace heapwatch::collector
