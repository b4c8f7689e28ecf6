#include "collector/snapshot_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace heapwatch::collector {
namespace {
namespace fs = std::filesystem;

class SnapshotStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hw-snap-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    ::chmod((dir_ + "/snapshots").c_str(), 0755);
    fs::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(SnapshotStoreTest, SavesListsAndSurvivesARestart) {
  std::string error;
  {
    SnapshotStore store(dir_, 10);
    ASSERT_EQ(store.Init(), "");
    auto id = store.Save(42, 1795000000.5, "manual", {{"answer", 1}}, "PPROF", &error);
    ASSERT_TRUE(id) << error;
    EXPECT_TRUE(SnapshotStore::ValidId(*id));
    EXPECT_NE(id->find("-42-"), std::string::npos);
  }
  SnapshotStore reopened(dir_, 10);
  ASSERT_EQ(reopened.Init(), "");
  auto list = reopened.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].pid, 42u);
  EXPECT_EQ(list[0].reason, "manual");
  auto doc = reopened.Load(list[0].id, &error);
  ASSERT_TRUE(doc) << error;
  EXPECT_EQ((*doc)["answer"], 1);
  EXPECT_EQ(reopened.LoadPprof(list[0].id).value_or(""), "PPROF");
  // No temporaries are left behind.
  for (const auto& e : fs::directory_iterator(dir_ + "/snapshots")) {
    EXPECT_EQ(e.path().filename().string().rfind(".tmp", 0), std::string::npos) << e.path();
  }
}

TEST_F(SnapshotStoreTest, KeepsOnlyTheNewestAndRejectsPathTricks) {
  SnapshotStore store(dir_, 3);
  ASSERT_EQ(store.Init(), "");
  std::string error;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store.Save(1, 100 + i, "r", {}, "", &error));
  auto list = store.List();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_DOUBLE_EQ(list[0].time, 104);  // newest first
  EXPECT_FALSE(SnapshotStore::ValidId("../../etc/passwd"));
  EXPECT_FALSE(SnapshotStore::ValidId("a/b"));
  EXPECT_FALSE(SnapshotStore::ValidId(""));
  EXPECT_FALSE(store.Load("../x", &error));
  EXPECT_FALSE(store.LoadPprof("..%2f"));
}

TEST_F(SnapshotStoreTest, CorruptFilesAreSkippedNotFatal) {
  SnapshotStore store(dir_, 3);
  ASSERT_EQ(store.Init(), "");
  std::string error;
  ASSERT_TRUE(store.Save(1, 100, "r", {}, "", &error));
  FILE* f = fopen((dir_ + "/snapshots/broken.json").c_str(), "w");
  fputs("{not json", f);
  fclose(f);
  SnapshotStore again(dir_, 3);
  EXPECT_EQ(again.Init(), "");
  EXPECT_EQ(again.List().size(), 1u);
  EXPECT_FALSE(again.Load("broken", &error));
  EXPECT_NE(error.find("corrupt"), std::string::npos);
}

TEST_F(SnapshotStoreTest, UnwritableDirectoryIsAnErrorNotACrash) {
  if (::geteuid() == 0) {
    // Root ignores permissions; use a path under a file instead.
    FILE* f = fopen((dir_ + "/file").c_str(), "w");
    fclose(f);
    SnapshotStore store(dir_ + "/file", 3);
    EXPECT_NE(store.Init(), "");
    std::string error;
    EXPECT_FALSE(store.Save(1, 1, "r", {}, "x", &error));
    EXPECT_FALSE(error.empty());
    EXPECT_EQ(store.write_errors(), 1u);
    return;
  }
  SnapshotStore store(dir_, 3);
  ASSERT_EQ(store.Init(), "");
  ::chmod((dir_ + "/snapshots").c_str(), 0500);
  EXPECT_NE(store.CheckWritable(), "");
  std::string error;
  EXPECT_FALSE(store.Save(1, 1, "r", {}, "x", &error));
  EXPECT_EQ(store.write_errors(), 1u);
}

TEST_F(SnapshotStoreTest, FullDiskFailsCleanlyAndKeepsEarlierSnapshots) {
  // A real full disk: a 64 KiB tmpfs (needs root to mount).
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tiny tmpfs";
  std::string mnt = dir_ + "/tiny";
  fs::create_directories(mnt);
  if (::system(("mount -t tmpfs -o size=64k tmpfs " + mnt + " 2>/dev/null").c_str()) != 0) {
    GTEST_SKIP() << "cannot mount tmpfs here";
  }
  {
    SnapshotStore store(mnt, 10);
    ASSERT_EQ(store.Init(), "");
    std::string error;
    ASSERT_TRUE(store.Save(1, 1, "small", {}, "x", &error)) << error;
    std::string big(256 * 1024, 'x');
    EXPECT_FALSE(store.Save(1, 2, "big", {}, big, &error));
    EXPECT_NE(error.find("No space"), std::string::npos) << error;
    EXPECT_EQ(store.write_errors(), 1u);
    ASSERT_EQ(store.List().size(), 1u);
    EXPECT_TRUE(store.Load(store.List()[0].id, &error)) << error;
  }
  ::system(("umount " + mnt).c_str());
}

}  // namespace
}  // namespace heapwatch::collector
