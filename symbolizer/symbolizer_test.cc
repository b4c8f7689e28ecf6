// End-to-end tests of the Symbolizer on real binaries: each fixture program
// runs, reports the return addresses it captured and its load biases, and the
// symbolizer must name them as the source says (lines found by "@site:"
// markers, not hard-coded).
#include "symbolizer/symbolizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "symbolizer/elf_file.h"
#include "symbolizer/test_fixtures.h"

namespace heapwatch::symbolizer {
namespace {

using testing::FixturePath;
using testing::FixtureRun;
using testing::FixtureSource;
using testing::MarkerLine;
using testing::RunFixture;
using testing::TempDir;

std::string BuildIdOf(const std::string& path) {
  ElfFile file;
  std::string error;
  EXPECT_EQ(OpenElfFile("", path, &file, &error), ElfOpenResult::kOk) << path << ": " << error;
  return file.build_id;
}

ModuleRef Ref(const std::string& path, bool with_build_id = true) {
  return ModuleRef{path, with_build_id ? BuildIdOf(path) : std::string()};
}

const std::vector<std::string> kAsIs = {""};

// InnerStep -> MiddleStep -> OuterEntry, the first two inlined.
void ExpectInlineChain(const Location& location) {
  const std::string source = FixtureSource("fixture.cc");
  ASSERT_EQ(location.status, Status::kOk);
  ASSERT_EQ(location.frames.size(), 3u);
  const SourceFrame& inner = location.frames[0];
  const SourceFrame& middle = location.frames[1];
  const SourceFrame& outer = location.frames[2];
  EXPECT_EQ(inner.function, "InnerStep");
  EXPECT_EQ(inner.file, source);
  EXPECT_EQ(inner.line, MarkerLine(source, "inner"));
  EXPECT_GT(inner.column, 0);
  EXPECT_TRUE(inner.inlined);
  EXPECT_EQ(middle.function, "MiddleStep");
  EXPECT_EQ(middle.file, source);
  EXPECT_EQ(middle.line, MarkerLine(source, "middle"));
  EXPECT_TRUE(middle.inlined);
  EXPECT_EQ(outer.function, "OuterEntry()");
  EXPECT_EQ(outer.file, source);
  EXPECT_EQ(outer.line, MarkerLine(source, "outer"));
  EXPECT_FALSE(outer.inlined);
}

void ExpectWidget(const Location& location, bool with_lines) {
  ASSERT_EQ(location.status, Status::kOk);
  ASSERT_EQ(location.frames.size(), 1u);
  EXPECT_EQ(location.frames[0].function, "fixture::Widget<int>::Build(int)");
  EXPECT_FALSE(location.frames[0].inlined);
  if (with_lines) {
    EXPECT_EQ(location.frames[0].file, FixtureSource("fixture.cc"));
    EXPECT_EQ(location.frames[0].line, MarkerLine(FixtureSource("fixture.cc"), "widget"));
  } else {
    EXPECT_EQ(location.frames[0].file, "");
    EXPECT_EQ(location.frames[0].line, 0);
  }
}

// Only the real function: what symbol tables alone can say.
void ExpectOuterOnly(const Location& location) {
  ASSERT_EQ(location.status, Status::kOk);
  ASSERT_EQ(location.frames.size(), 1u);
  EXPECT_EQ(location.frames[0].function, "OuterEntry()");
  EXPECT_EQ(location.frames[0].file, "");
  EXPECT_FALSE(location.frames[0].inlined);
}

TEST(SymbolizerTest, PieWithDebugInfoGivesInlineChainAtO0) {
  const std::string binary = FixturePath("fixture_g");
  FixtureRun run = RunFixture(binary);
  ASSERT_NE(run.bias.at("main"), 0u) << "expected a PIE loaded at a non-zero bias";
  Symbolizer symbolizer;
  ExpectInlineChain(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "inlined")));
  ExpectWidget(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "widget")), true);
}

TEST(SymbolizerTest, OptimizedInlineChainOrderAndLines) {
  const std::string binary = FixturePath("fixture_o2");
  FixtureRun run = RunFixture(binary);
  Symbolizer symbolizer;
  ExpectInlineChain(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "inlined")));
  ExpectWidget(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "widget")), true);
}

TEST(SymbolizerTest, FunctionEntryAddresses) {
  const std::string binary = FixturePath("fixture_g");
  FixtureRun run = RunFixture(binary);
  Symbolizer symbolizer;
  Location outer =
      symbolizer.Symbolize(Ref(binary), kAsIs, run.FunctionVaddr("main", "OuterEntry"));
  ASSERT_EQ(outer.status, Status::kOk);
  EXPECT_EQ(outer.frames.back().function, "OuterEntry()");
  Location widget = symbolizer.Symbolize(
      Ref(binary), kAsIs, run.FunctionVaddr("main", "fixture::Widget<int>::Build"));
  ASSERT_EQ(widget.status, Status::kOk);
  EXPECT_EQ(widget.frames.back().function, "fixture::Widget<int>::Build(int)");
}

TEST(SymbolizerTest, NonPieExecutable) {
  const std::string binary = FixturePath("fixture_nopie");
  FixtureRun run = RunFixture(binary);
  EXPECT_EQ(run.bias.at("main"), 0u);
  Symbolizer symbolizer;
  ExpectInlineChain(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "inlined")));
  ExpectWidget(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "widget")), true);
}

TEST(SymbolizerTest, WithoutDebugInfoNamesComeFromSymtab) {
  const std::string binary = FixturePath("fixture_nog");
  FixtureRun run = RunFixture(binary);
  Symbolizer symbolizer;
  ExpectOuterOnly(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "inlined")));
  ExpectWidget(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "widget")), false);
}

TEST(SymbolizerTest, StrippedBinaryFallsBackToDynsym) {
  const std::string binary = FixturePath("fixture_stripped");
  FixtureRun run = RunFixture(binary);
  Symbolizer symbolizer;
  ExpectOuterOnly(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "inlined")));
  ExpectWidget(symbolizer.Symbolize(Ref(binary), kAsIs, run.SiteVaddr("main", "widget")), false);
}

TEST(SymbolizerTest, DlopenedSharedLibrary) {
  const std::string plugin = FixturePath("libhwsym_plugin.so");
  FixtureRun run = RunFixture(FixturePath("fixture_g"), plugin);
  ASSERT_EQ(run.path.at("plugin"), plugin);
  ASSERT_NE(run.bias.at("plugin"), 0u);
  Symbolizer symbolizer;
  Location location = symbolizer.Symbolize(Ref(plugin), kAsIs, run.SiteVaddr("plugin", "plugin"));
  ASSERT_EQ(location.status, Status::kOk);
  ASSERT_EQ(location.frames.size(), 1u);
  EXPECT_EQ(location.frames[0].function, "plugin::AllocateThing(void (*)())");
  EXPECT_EQ(location.frames[0].file, FixtureSource("plugin.cc"));
  EXPECT_EQ(location.frames[0].line, MarkerLine(FixtureSource("plugin.cc"), "plugin"));

  Location entry =
      symbolizer.Symbolize(Ref(plugin), kAsIs, run.FunctionVaddr("plugin", "hwsym_plugin_run"));
  ASSERT_EQ(entry.status, Status::kOk);
  EXPECT_EQ(entry.frames.back().function, "hwsym_plugin_run");
}

TEST(SymbolizerTest, StrippedSharedLibraryFallsBackToDynsym) {
  const std::string plugin = FixturePath("libhwsym_plugin_stripped.so");
  FixtureRun run = RunFixture(FixturePath("fixture_g"), plugin);
  Symbolizer symbolizer;
  Location location = symbolizer.Symbolize(Ref(plugin), kAsIs, run.SiteVaddr("plugin", "plugin"));
  ASSERT_EQ(location.status, Status::kOk);
  ASSERT_EQ(location.frames.size(), 1u);
  EXPECT_EQ(location.frames[0].function, "plugin::AllocateThing(void (*)())");
  EXPECT_EQ(location.frames[0].file, "");
}

TEST(SymbolizerTest, AddressOutsideModuleIsNoSymbol) {
  const std::string binary = FixturePath("fixture_g");
  Symbolizer symbolizer;
  Location location = symbolizer.Symbolize(Ref(binary), kAsIs, uint64_t{1} << 40);
  EXPECT_EQ(location.status, Status::kNoSymbol);
  EXPECT_TRUE(location.frames.empty());
}

// --- Separate debug info -------------------------------------------------

class SeparateDebugInfoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ = RunFixture(FixturePath("fixture_split"));
    build_id_ = BuildIdOf(FixturePath("fixture_split"));
    ASSERT_FALSE(build_id_.empty());
  }
  // Lays the stripped binary out at dir_/bin/app and symbolizes the inlined
  // site with the given debug dirs and roots.
  Location SymbolizeApp(std::vector<std::string> debug_dirs,
                        std::vector<std::string> roots = {""},
                        const std::string& module_path = "") {
    Options options;
    options.debug_dirs = std::move(debug_dirs);
    Symbolizer symbolizer(options);
    ModuleRef module{module_path.empty() ? dir_.path() + "/bin/app" : module_path, build_id_};
    Location location = symbolizer.Symbolize(module, roots, run_.SiteVaddr("main", "inlined"));
    debug_files_opened_ = symbolizer.GetStats().debug_files_opened;
    return location;
  }
  void InstallApp(const std::string& root_relative = "bin/app") {
    dir_.Copy(FixturePath("fixture_split"), root_relative);
  }
  std::string HexBuildId() const { return HexEncode(build_id_); }

  TempDir dir_;
  FixtureRun run_;
  std::string build_id_;
  uint64_t debug_files_opened_ = 0;
};

TEST_F(SeparateDebugInfoTest, WithoutDebugFileThereIsNoName) {
  // The control for the tests below: the stripped binary alone exports no
  // symbol for OuterEntry, so any name they get came from the debug file.
  InstallApp();
  Location location = SymbolizeApp({dir_.path() + "/nowhere"});
  EXPECT_EQ(location.status, Status::kNoSymbol);
  EXPECT_EQ(debug_files_opened_, 0u);
}

TEST_F(SeparateDebugInfoTest, DebuglinkNextToFile) {
  InstallApp();
  dir_.Copy(FixturePath("fixture_split.debug"), "bin/fixture_split.debug");
  ExpectInlineChain(SymbolizeApp({dir_.path() + "/nowhere"}));
  EXPECT_EQ(debug_files_opened_, 1u);
}

TEST_F(SeparateDebugInfoTest, DebuglinkInDotDebugSubdir) {
  InstallApp();
  dir_.Copy(FixturePath("fixture_split.debug"), "bin/.debug/fixture_split.debug");
  ExpectInlineChain(SymbolizeApp({dir_.path() + "/nowhere"}));
}

TEST_F(SeparateDebugInfoTest, DebuglinkUnderDebugDir) {
  InstallApp();
  // <debug dir>/<directory of the module>/<debuglink>
  dir_.Copy(FixturePath("fixture_split.debug"),
            "debug" + dir_.path() + "/bin/fixture_split.debug");
  ExpectInlineChain(SymbolizeApp({dir_.path() + "/debug"}));
}

TEST_F(SeparateDebugInfoTest, BuildIdDirectory) {
  InstallApp();
  std::string hex = HexBuildId();
  dir_.Copy(FixturePath("fixture_split.debug"),
            "debug/.build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug");
  ExpectInlineChain(SymbolizeApp({dir_.path() + "/debug"}));
}

TEST_F(SeparateDebugInfoTest, BuildIdDirectoryInsideProcessRoot) {
  // The application's image carries the debug package: both the module and
  // /usr/lib/debug are looked up inside the root, as /proc/<pid>/root would be.
  InstallApp("root/usr/bin/app");
  std::string hex = HexBuildId();
  dir_.Copy(FixturePath("fixture_split.debug"),
            "root/usr/lib/debug/.build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug");
  ExpectInlineChain(SymbolizeApp({"/usr/lib/debug"}, {dir_.path() + "/root"}, "/usr/bin/app"));
}

TEST_F(SeparateDebugInfoTest, DebugFileOfAnotherBuildIsRejected) {
  // Right name, wrong contents: a debug file from another build must not name
  // this binary's addresses.
  InstallApp();
  dir_.Copy(FixturePath("fixture_nobuildid.debug"), "bin/fixture_split.debug");
  Location location = SymbolizeApp({dir_.path() + "/nowhere"});
  EXPECT_EQ(location.status, Status::kNoSymbol);
  EXPECT_EQ(debug_files_opened_, 0u);
}

TEST(SymbolizerTest, NoBuildIdModuleUsesDebuglinkCrc) {
  const std::string binary = FixturePath("fixture_nobuildid");
  ASSERT_EQ(BuildIdOf(binary), "");
  FixtureRun run = RunFixture(binary);
  const uint64_t vaddr = run.SiteVaddr("main", "inlined");
  {
    TempDir dir;
    dir.Copy(binary, "bin/app");
    dir.Copy(FixturePath("fixture_nobuildid.debug"), "bin/fixture_nobuildid.debug");
    Symbolizer symbolizer;
    ExpectInlineChain(symbolizer.Symbolize(ModuleRef{dir.path() + "/bin/app", ""}, kAsIs, vaddr));
  }
  {
    // Same name, other contents: the CRC in .gnu_debuglink does not match.
    TempDir dir;
    dir.Copy(binary, "bin/app");
    dir.Copy(FixturePath("fixture_split.debug"), "bin/fixture_nobuildid.debug");
    Symbolizer symbolizer;
    Location location = symbolizer.Symbolize(ModuleRef{dir.path() + "/bin/app", ""}, kAsIs, vaddr);
    EXPECT_EQ(location.status, Status::kNoSymbol);
    EXPECT_EQ(symbolizer.GetStats().debug_files_opened, 0u);
  }
}

// --- Build-id verification and roots -------------------------------------

TEST(SymbolizerTest, BinaryReplacedOnDiskIsAMismatch) {
  TempDir dir;
  const std::string app = dir.Copy(FixturePath("fixture_g"), "app");
  FixtureRun run = RunFixture(app);
  const std::string original_id = BuildIdOf(app);
  // Rebuilt and installed over the old path after the process started.
  dir.Copy(FixturePath("fixture_g_v2"), "app.new");
  std::filesystem::rename(dir.path() + "/app.new", app);
  ASSERT_NE(BuildIdOf(app), original_id);

  Symbolizer symbolizer;
  Location location =
      symbolizer.Symbolize(ModuleRef{app, original_id}, kAsIs, run.SiteVaddr("main", "inlined"));
  EXPECT_EQ(location.status, Status::kBuildIdMismatch);
  EXPECT_TRUE(location.frames.empty());
  EXPECT_EQ(symbolizer.GetStats().mismatches, 1u);
  EXPECT_EQ(symbolizer.GetStats().files_opened, 0u);

  // Peek reports the mismatch for any address, so the caller can mark frames.
  std::optional<Location> peeked =
      symbolizer.Peek(ModuleRef{app, original_id}, kAsIs, run.SiteVaddr("main", "widget"));
  ASSERT_TRUE(peeked.has_value());
  EXPECT_EQ(peeked->status, Status::kBuildIdMismatch);

  // Remembered: more addresses in the module do not reopen the file.
  location =
      symbolizer.Symbolize(ModuleRef{app, original_id}, kAsIs, run.SiteVaddr("main", "widget"));
  EXPECT_EQ(location.status, Status::kBuildIdMismatch);
  EXPECT_EQ(symbolizer.GetStats().mismatches, 1u);

  // The new binary, under its own build-id, is fine.
  FixtureRun run_v2 = RunFixture(app);
  ExpectWidget(
      symbolizer.Symbolize(ModuleRef{app, BuildIdOf(app)}, kAsIs, run_v2.SiteVaddr("main", "widget")),
      true);
  EXPECT_EQ(symbolizer.GetStats().files_opened, 1u);
}

TEST(SymbolizerTest, MismatchIsRetriedAfterTheRetryInterval) {
  TempDir dir;
  const std::string app = dir.Copy(FixturePath("fixture_g_v2"), "app");
  const std::string wanted = BuildIdOf(FixturePath("fixture_g"));
  FixtureRun run = RunFixture(FixturePath("fixture_g"));
  Options options;
  options.retry_failed_after = std::chrono::milliseconds(0);
  Symbolizer symbolizer(options);
  const uint64_t vaddr = run.SiteVaddr("main", "inlined");
  EXPECT_EQ(symbolizer.Symbolize(ModuleRef{app, wanted}, kAsIs, vaddr).status,
            Status::kBuildIdMismatch);
  ASSERT_EQ(symbolizer.Peek(ModuleRef{app, wanted}, kAsIs, vaddr)->status,
            Status::kBuildIdMismatch);
  dir.Copy(FixturePath("fixture_g"), "app");  // the right file appears
  ExpectInlineChain(symbolizer.Symbolize(ModuleRef{app, wanted}, kAsIs, vaddr));
  // The failure is forgotten once the module opened.
  ExpectInlineChain(*symbolizer.Peek(ModuleRef{app, wanted}, kAsIs, vaddr));
  EXPECT_FALSE(symbolizer.Peek(ModuleRef{app, wanted}, kAsIs, vaddr + 1).has_value());
}

TEST(SymbolizerTest, OpenModuleKeepsServingAfterReplacement) {
  // Once verified and open, the module is the inode the build-id matched:
  // replacing the path does not change answers for that build-id.
  TempDir dir;
  const std::string app = dir.Copy(FixturePath("fixture_g"), "app");
  FixtureRun run = RunFixture(app);
  ModuleRef module{app, BuildIdOf(app)};
  Symbolizer symbolizer;
  ExpectWidget(symbolizer.Symbolize(module, kAsIs, run.SiteVaddr("main", "widget")), true);
  dir.Copy(FixturePath("fixture_g_v2"), "app.new");
  std::filesystem::rename(dir.path() + "/app.new", app);
  ExpectInlineChain(symbolizer.Symbolize(module, kAsIs, run.SiteVaddr("main", "inlined")));
}

TEST(SymbolizerTest, RootsAreTriedInOrderAndBuildIdDecides) {
  TempDir dir;
  dir.Copy(FixturePath("fixture_g_v2"), "stale/usr/bin/app");
  dir.Copy(FixturePath("fixture_g"), "good/usr/bin/app");
  FixtureRun run = RunFixture(FixturePath("fixture_g"));
  ModuleRef module{"/usr/bin/app", BuildIdOf(FixturePath("fixture_g"))};
  Symbolizer symbolizer;
  std::vector<std::string> roots = {dir.path() + "/missing", dir.path() + "/stale",
                                    dir.path() + "/good"};
  ExpectInlineChain(symbolizer.Symbolize(module, roots, run.SiteVaddr("main", "inlined")));
  Symbolizer only_stale;
  EXPECT_EQ(only_stale.Symbolize(module, {dir.path() + "/stale"}, 0).status,
            Status::kBuildIdMismatch);
}

TEST(SymbolizerTest, AbsoluteSymlinkResolvesInsideRoot) {
  // In the application's filesystem /usr/lib/libx.so -> /opt/x/libx.so. Seen
  // through a root, the link must resolve inside that root, not in ours.
  TempDir dir;
  dir.Copy(FixturePath("libhwsym_plugin.so"), "root/opt/x/libx.so");
  std::filesystem::create_directories(dir.path() + "/root/usr/lib");
  std::filesystem::create_symlink("/opt/x/libx.so", dir.path() + "/root/usr/lib/libx.so");
  FixtureRun run = RunFixture(FixturePath("fixture_g"), FixturePath("libhwsym_plugin.so"));
  ModuleRef module{"/usr/lib/libx.so", BuildIdOf(FixturePath("libhwsym_plugin.so"))};
  Symbolizer symbolizer;
  Location location =
      symbolizer.Symbolize(module, {dir.path() + "/root"}, run.SiteVaddr("plugin", "plugin"));
  ASSERT_EQ(location.status, Status::kOk);
  EXPECT_EQ(location.frames[0].function, "plugin::AllocateThing(void (*)())");
}

TEST(SymbolizerTest, MissingFileAndNoRoots) {
  Symbolizer symbolizer;
  EXPECT_EQ(symbolizer.Symbolize(ModuleRef{"/nonexistent/app", "\x01\x02"}, kAsIs, 0x1000).status,
            Status::kNoFile);
  EXPECT_EQ(symbolizer.Symbolize(ModuleRef{"/nonexistent/lib.so", ""}, {}, 0x1000).status,
            Status::kNoFile);
  EXPECT_EQ(symbolizer.Symbolize(ModuleRef{"linux-vdso.so.1", ""}, {"/proc/1/root"}, 0).status,
            Status::kNoFile);
  EXPECT_EQ(symbolizer.GetStats().open_failures, 3u);
}

// --- Caching, bounds, threads --------------------------------------------

TEST(SymbolizerTest, CachesPerAddressAndSymbolizeManyAgrees) {
  const std::string binary = FixturePath("fixture_o2");
  FixtureRun run = RunFixture(binary);
  const ModuleRef module = Ref(binary);
  const uint64_t inlined = run.SiteVaddr("main", "inlined");
  const uint64_t widget = run.SiteVaddr("main", "widget");
  Symbolizer symbolizer;
  EXPECT_FALSE(symbolizer.Peek(module, kAsIs, inlined).has_value());

  Location first = symbolizer.Symbolize(module, kAsIs, inlined);
  Symbolizer::Stats stats = symbolizer.GetStats();
  EXPECT_EQ(stats.lookups, 1u);
  EXPECT_EQ(stats.cache_hits, 0u);
  EXPECT_EQ(stats.files_opened, 1u);

  EXPECT_EQ(symbolizer.Symbolize(module, kAsIs, inlined), first);
  std::optional<Location> peeked = symbolizer.Peek(module, kAsIs, inlined);
  ASSERT_TRUE(peeked.has_value());
  EXPECT_EQ(*peeked, first);

  std::vector<Location> many = symbolizer.SymbolizeMany(module, kAsIs, {widget, inlined, widget});
  ASSERT_EQ(many.size(), 3u);
  EXPECT_EQ(many[1], first);
  ExpectWidget(many[0], true);
  EXPECT_EQ(many[2], many[0]);
  stats = symbolizer.GetStats();
  EXPECT_EQ(stats.lookups, 5u);
  EXPECT_EQ(stats.cache_hits, 3u);  // second Symbolize, Peek, inlined in the batch
  EXPECT_EQ(stats.files_opened, 1u);
  EXPECT_EQ(stats.cached_addresses, 2u);
}

TEST(SymbolizerTest, AddressCacheIsBoundedWithCountedEvictions) {
  const std::string binary = FixturePath("fixture_g");
  FixtureRun run = RunFixture(binary);
  Options options;
  options.max_cached_addresses = 2;
  Symbolizer symbolizer(options);
  const ModuleRef module = Ref(binary);
  std::vector<uint64_t> vaddrs = {run.SiteVaddr("main", "inlined"), run.SiteVaddr("main", "widget"),
                                  run.FunctionVaddr("main", "OuterEntry")};
  for (uint64_t vaddr : vaddrs) symbolizer.Symbolize(module, kAsIs, vaddr);
  Symbolizer::Stats stats = symbolizer.GetStats();
  EXPECT_EQ(stats.cached_addresses, 2u);
  EXPECT_EQ(stats.address_evictions, 1u);
  EXPECT_FALSE(symbolizer.Peek(module, kAsIs, vaddrs[0]).has_value());  // the oldest went
  // Evicted results come back right, from the (still open) module.
  ExpectInlineChain(symbolizer.Symbolize(module, kAsIs, vaddrs[0]));
  EXPECT_EQ(symbolizer.GetStats().files_opened, 1u);

  Options by_bytes;
  by_bytes.max_cached_address_bytes = 1;  // every result is bigger: none kept
  Symbolizer tiny(by_bytes);
  ExpectInlineChain(tiny.Symbolize(module, kAsIs, vaddrs[0]));
  EXPECT_EQ(tiny.GetStats().cached_addresses, 0u);
  EXPECT_EQ(tiny.GetStats().cached_address_bytes, 0u);
}

TEST(SymbolizerTest, ModuleCacheIsBounded) {
  FixtureRun run_g = RunFixture(FixturePath("fixture_g"));
  FixtureRun run_o2 = RunFixture(FixturePath("fixture_o2"));
  Options options;
  options.max_cached_modules = 1;
  options.max_cached_addresses = 0;  // force module lookups every time
  Symbolizer symbolizer(options);
  for (int i = 0; i < 3; ++i) {
    ExpectInlineChain(symbolizer.Symbolize(Ref(FixturePath("fixture_g")), kAsIs,
                                           run_g.SiteVaddr("main", "inlined")));
    ExpectInlineChain(symbolizer.Symbolize(Ref(FixturePath("fixture_o2")), kAsIs,
                                           run_o2.SiteVaddr("main", "inlined")));
  }
  Symbolizer::Stats stats = symbolizer.GetStats();
  EXPECT_EQ(stats.cached_modules, 1u);
  EXPECT_EQ(stats.files_opened, 6u);
  EXPECT_EQ(stats.module_evictions, 5u);
}

TEST(SymbolizerTest, ConcurrentLookupsAgreeWithSerialOnes) {
  struct Case {
    ModuleRef module;
    uint64_t vaddr;
    Location expected;
  };
  std::vector<Case> cases;
  for (const char* name : {"fixture_g", "fixture_o2", "fixture_nog", "fixture_stripped"}) {
    FixtureRun run = RunFixture(FixturePath(name));
    for (const char* site : {"inlined", "widget"}) {
      cases.push_back({Ref(FixturePath(name)), run.SiteVaddr("main", site), {}});
    }
  }
  {
    Symbolizer reference;
    for (Case& c : cases) c.expected = reference.Symbolize(c.module, kAsIs, c.vaddr);
  }
  // Small caches so that threads also race on evictions and reopening.
  Options options;
  options.max_cached_modules = 2;
  options.max_cached_addresses = 3;
  Symbolizer symbolizer(options);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const Case& c = cases[(i * 7 + t * 3) % cases.size()];
        if (i % 5 == 0) {
          std::vector<Location> many =
              symbolizer.SymbolizeMany(c.module, kAsIs, {c.vaddr, c.vaddr});
          if (many[0] != c.expected || many[1] != c.expected) ++wrong;
        } else if (symbolizer.Symbolize(c.module, kAsIs, c.vaddr) != c.expected) {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(symbolizer.GetStats().lookups, 4u * (160 + 40 * 2));
}

}  // namespace
}  // namespace heapwatch::symbolizer
