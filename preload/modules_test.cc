#include "modules.h"

#include <dlfcn.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <link.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <string>
#include <vector>

namespace heapwatch::preload {
namespace {

struct Seen {
  wire::Module m;
  std::string path;
  std::vector<uint8_t> build_id;
};

// The kModule frames of a map, by their executable range's start.
std::map<uint64_t, Seen> Decode(const FrameWriter& out) {
  std::map<uint64_t, Seen> modules;
  for (size_t at = 0; at + sizeof(wire::FrameHeader) <= out.size();) {
    wire::FrameHeader h;
    memcpy(&h, out.data() + at, sizeof(h));
    const uint8_t* payload = out.data() + at + sizeof(h);
    if (h.type == static_cast<uint16_t>(wire::FrameType::kModule)) {
      Seen s;
      memcpy(&s.m, payload, sizeof(s.m));
      s.build_id.assign(payload + sizeof(s.m), payload + sizeof(s.m) + s.m.build_id_len);
      s.path.assign(reinterpret_cast<const char*>(payload + sizeof(s.m) + s.m.build_id_len), s.m.path_len);
      modules[s.m.start] = s;
    }
    at += sizeof(h) + h.length;
  }
  return modules;
}

std::string Base(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// What the loader says of the same objects (dl_iterate_phdr), the map
// built from the kernel's mappings must say too: load bias, executable
// range, its file offset, build-id, and the file's name.
TEST(ModulesTest, TheMapSaysWhatTheLoaderSays) {
  std::vector<uint8_t> buffer(1 << 20);
  FrameWriter out(buffer.data(), buffer.size());
  uint64_t fingerprint = 0;
  const uint32_t written = WriteModules(&out, &fingerprint);
  EXPECT_NE(fingerprint, 0u);
  EXPECT_EQ(fingerprint, MappingsFingerprint());
  const std::map<uint64_t, Seen> modules = Decode(out);
  EXPECT_EQ(modules.size(), written);
  struct Context {
    const std::map<uint64_t, Seen>* modules;
    int checked;
  } ctx{&modules, 0};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto* c = static_cast<Context*>(arg);
        if (info->dlpi_name && strncmp(info->dlpi_name, "linux-vdso", 10) == 0) return 0;
        uint64_t start = 0, end = 0, offset = 0;
        bool exec = false;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
          const uint64_t lo = info->dlpi_addr + ph.p_vaddr;
          if (!exec || lo < start) {
            start = lo;
            offset = ph.p_offset;
          }
          if (!exec || lo + ph.p_memsz > end) end = lo + ph.p_memsz;
          exec = true;
        }
        if (!exec) return 0;
        auto it = c->modules->find(start);
        if (it == c->modules->end()) {
          ADD_FAILURE() << "no module at " << std::hex << start << " (" << info->dlpi_name << ")";
          return 0;
        }
        const Seen& s = it->second;
        EXPECT_EQ(s.m.load_bias, info->dlpi_addr) << s.path;
        EXPECT_EQ(s.m.end, end) << s.path;
        EXPECT_EQ(s.m.file_offset, offset) << s.path;
        EXPECT_NE(s.m.epoch & wire::kEpochStamped, 0u);
        // The kernel names the file itself (libstdc++.so.6.0.30, not the
        // libstdc++.so.6 the loader opened through a link).
        char real[PATH_MAX];
        if (info->dlpi_name && *info->dlpi_name && realpath(info->dlpi_name, real)) {
          EXPECT_EQ(s.path, real);
        }
        ++c->checked;
        return 0;
      },
      &ctx);
  EXPECT_GE(ctx.checked, 3);  // the test, libc, libstdc++ at least
  EXPECT_EQ(static_cast<size_t>(ctx.checked), modules.size());
  // The test program itself has a build-id (Debian's default link).
  bool any_build_id = false;
  for (const auto& [start, s] : modules) any_build_id |= s.m.build_id_len == 20;
  EXPECT_TRUE(any_build_id);
}

// Loading and unloading an object changes the fingerprint, and the map
// lists it while it is loaded; so does a move of the unload epoch alone.
TEST(ModulesTest, TheFingerprintFollowsLoadsUnloadsAndTheEpoch) {
  const uint64_t before = MappingsFingerprint();
  void* handle = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!handle) GTEST_SKIP() << dlerror();
  const uint64_t loaded = MappingsFingerprint();
  EXPECT_NE(loaded, before);
  std::vector<uint8_t> buffer(1 << 20);
  FrameWriter out(buffer.data(), buffer.size());
  uint64_t fingerprint = 0;
  WriteModules(&out, &fingerprint);
  EXPECT_EQ(fingerprint, loaded);
  bool listed = false;
  for (const auto& [start, s] : Decode(out)) listed |= Base(s.path).rfind("libz.so", 0) == 0;
  EXPECT_TRUE(listed);
  ASSERT_EQ(dlclose(handle), 0);
  EXPECT_EQ(MappingsFingerprint(), before);
  NoteUnload();
  EXPECT_NE(MappingsFingerprint(), before);
}

}  // namespace
}  // namespace heapwatch::preload
