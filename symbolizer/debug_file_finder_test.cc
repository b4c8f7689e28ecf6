#include "symbolizer/debug_file_finder.h"

#include <gtest/gtest.h>

namespace heapwatch::symbolizer {

// Readable failure messages.
void PrintTo(const DebugFileCandidate& candidate, std::ostream* out) {
  *out << "{\"" << candidate.root << "\", \"" << candidate.path << "\"}";
}

namespace {

TEST(DebugFileFinderTest, BuildIdFirstThenDebuglinkPlacesInRootThenOwnFilesystem) {
  DebugFileQuery query;
  query.root = "/proc/7/root";
  query.module_path = "/usr/bin/app";
  query.build_id = std::string("\xab\xcd\x01\x02", 4);
  query.debuglink = "app.debug";
  query.debug_dirs = {"/usr/lib/debug"};
  std::vector<DebugFileCandidate> expected = {
      {"/proc/7/root", "/usr/lib/debug/.build-id/ab/cd0102.debug"},
      {"", "/usr/lib/debug/.build-id/ab/cd0102.debug"},
      {"/proc/7/root", "/usr/bin/app.debug"},
      {"/proc/7/root", "/usr/bin/.debug/app.debug"},
      {"/proc/7/root", "/usr/lib/debug/usr/bin/app.debug"},
      {"", "/usr/lib/debug/usr/bin/app.debug"},
  };
  EXPECT_EQ(DebugFileCandidates(query), expected);
}

TEST(DebugFileFinderTest, NoRootMeansNoDuplicates) {
  DebugFileQuery query;
  query.module_path = "/lib/libx.so";
  query.debuglink = "libx.so.debug";
  query.debug_dirs = {"/usr/lib/debug/", "/dbg"};
  std::vector<DebugFileCandidate> expected = {
      {"", "/lib/libx.so.debug"},
      {"", "/lib/.debug/libx.so.debug"},
      {"", "/usr/lib/debug/lib/libx.so.debug"},
      {"", "/dbg/lib/libx.so.debug"},
  };
  EXPECT_EQ(DebugFileCandidates(query), expected);
}

TEST(DebugFileFinderTest, RejectsDebuglinkThatLeavesTheDirectory) {
  // .gnu_debuglink is a file name; one with a slash would send us elsewhere.
  DebugFileQuery query;
  query.module_path = "/usr/bin/app";
  query.debuglink = "../../etc/shadow";
  query.debug_dirs = {"/usr/lib/debug"};
  EXPECT_TRUE(DebugFileCandidates(query).empty());
  query.debuglink = "..";
  EXPECT_TRUE(DebugFileCandidates(query).empty());
}

TEST(DebugFileFinderTest, RelativeModulePathGetsOnlyBuildIdCandidates) {
  DebugFileQuery query;
  query.module_path = "app";
  query.build_id = "\x12\x34";
  query.debuglink = "app.debug";
  query.debug_dirs = {"/d"};
  std::vector<DebugFileCandidate> expected = {{"", "/d/.build-id/12/34.debug"}};
  EXPECT_EQ(DebugFileCandidates(query), expected);
}

}  // namespace
}  // namespace heapwatch::symbolizer
