#include "modules.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "real_allocator.h"

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

// What the loader says of the same objects (dl_iterate_phdr), the map must
// say too: load bias, executable range and its file offset, and the file:
// the kernel names the file itself (libstdc++.so.6.0.30, not the
// libstdc++.so.6 the loader opened through a link), the loader's own list
// the name it opened. Returns how many objects differ (each said on stderr)
// and, in *checked, how many agree. No gtest assertions: a forked child
// runs it too.
int Mismatches(const std::map<uint64_t, Seen>& modules, bool kernel_names, int* checked) {
  struct Context {
    const std::map<uint64_t, Seen>* modules;
    bool kernel_names;
    int checked, bad;
  } ctx{&modules, kernel_names, 0, 0};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto* c = static_cast<Context*>(arg);
        const char* name = info->dlpi_name ? info->dlpi_name : "";
        if (strncmp(name, "linux-vdso", 10) == 0) return 0;
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
        char real[PATH_MAX];
        std::string want = *name && c->kernel_names && realpath(name, real) ? real : name;
        if (it == c->modules->end() || it->second.m.load_bias != info->dlpi_addr || it->second.m.end != end ||
            it->second.m.file_offset != offset || !(it->second.m.epoch & wire::kEpochStamped) ||
            (*name && it->second.path != want)) {
          fprintf(stderr, "%s at %llx: %s\n", name, static_cast<unsigned long long>(start),
                  it == c->modules->end() ? "no module" : it->second.path.c_str());
          ++c->bad;
        } else {
          ++c->checked;
        }
        return 0;
      },
      &ctx);
  *checked = ctx.checked;
  return ctx.bad;
}

TEST(ModulesTest, TheMapSaysWhatTheLoaderSays) {
  std::vector<uint8_t> buffer(1 << 20);
  FrameWriter out(buffer.data(), buffer.size());
  uint64_t fingerprint = 0;
  const uint32_t written = WriteModules(&out, &fingerprint);
  EXPECT_NE(fingerprint, 0u);
  EXPECT_EQ(fingerprint, MappingsFingerprint());
  const std::map<uint64_t, Seen> modules = Decode(out);
  EXPECT_EQ(modules.size(), written);
  int checked = 0;
  EXPECT_EQ(Mismatches(modules, true, &checked), 0);
  EXPECT_GE(checked, 3);  // the test, libc, libstdc++ at least
  EXPECT_EQ(static_cast<size_t>(checked), modules.size());
  // The test program itself has a build-id (Debian's default link).
  bool any_build_id = false;
  for (const auto& [start, s] : modules) any_build_id |= s.m.build_id_len == 20;
  EXPECT_TRUE(any_build_id);
}

// Without /proc (a chroot into a root that has none), the map comes from
// the loader's own list of objects (_r_debug): the same objects, under the
// names the loader gave them (the main program's unknown, as before).
TEST(ModulesTest, WithoutProcTheLoadersListGivesTheSameMap) {
  if (geteuid() != 0) GTEST_SKIP() << "chroot needs root";
  ASSERT_TRUE(ResolveRealAllocator());  // its walk notes the loader's list
  char dir[] = "/tmp/hw-modules-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    if (chroot(dir) != 0 || chdir("/") != 0) _exit(2);
    if (open("/proc/self/maps", O_RDONLY) >= 0) _exit(3);
    std::vector<uint8_t> buffer(1 << 20);
    FrameWriter out(buffer.data(), buffer.size());
    uint64_t fingerprint = 0;
    WriteModules(&out, &fingerprint);
    if (fingerprint == 0 || fingerprint != MappingsFingerprint()) _exit(4);
    const std::map<uint64_t, Seen> modules = Decode(out);
    int checked = 0;
    if (Mismatches(modules, false, &checked) != 0) _exit(5);
    _exit(checked >= 3 && static_cast<size_t>(checked) == modules.size() ? 0 : 6);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  rmdir(dir);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
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
