#include "modules.h"

#include <elf.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "raw_memory.h"
#include "raw_syscall.h"
#include "unloaded_code.h"

namespace heapwatch::preload {

constinit std::atomic<uint64_t> g_unload_epoch{0};
constinit std::atomic<uint64_t> g_modules_checked_stacks{~uint64_t{0}};

namespace {

struct WriteContext {
  FrameWriter* out;
  const char* exe_path;
  uint32_t epoch;  // Module::epoch for every module of this map
  uint32_t written;
  bool first;  // dl_iterate_phdr visits the main program first
};

// Finds NT_GNU_BUILD_ID in the object's PT_NOTE segments.
uint16_t FindBuildId(const dl_phdr_info* info, const uint8_t** id) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const auto* p = reinterpret_cast<const uint8_t*>(info->dlpi_addr + ph.p_vaddr);
    const uint8_t* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const auto* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
      const uint8_t* name = p + sizeof(ElfW(Nhdr));
      const uint8_t* desc = name + ((n->n_namesz + 3) & ~3u);
      const uint8_t* next = desc + ((n->n_descsz + 3) & ~3u);
      if (next > end) break;
      if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
        *id = desc;
        return static_cast<uint16_t>(n->n_descsz > wire::kMaxBuildIdBytes ? wire::kMaxBuildIdBytes
                                                                           : n->n_descsz);
      }
      p = next;
    }
  }
  return 0;
}

int WriteOne(dl_phdr_info* info, size_t, void* arg) {
  auto* ctx = static_cast<WriteContext*>(arg);
  const char* path = info->dlpi_name;
  bool first = ctx->first;
  ctx->first = false;
  if (!path || !*path) {
    // The main executable (visited first) has an empty name; other nameless
    // objects have no file to symbolize from.
    if (!first) return 0;
    path = ctx->exe_path;
  }
  if (strncmp(path, "linux-vdso", 10) == 0 || strncmp(path, "linux-gate", 10) == 0) return 0;

  wire::Module m{};
  m.load_bias = info->dlpi_addr;
  m.epoch = ctx->epoch;
  bool have_exec = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    uint64_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
    if (!have_exec) {
      m.start = lo;
      m.end = hi;
      m.file_offset = ph.p_offset;
      have_exec = true;
    } else {
      if (lo < m.start) {
        m.start = lo;
        m.file_offset = ph.p_offset;
      }
      if (hi > m.end) m.end = hi;
    }
  }
  if (!have_exec) return 0;
  const uint8_t* build_id = nullptr;
  m.build_id_len = FindBuildId(info, &build_id);
  size_t path_len = strlen(path);
  if (path_len > wire::kMaxPathBytes) path_len = wire::kMaxPathBytes;
  m.path_len = static_cast<uint16_t>(path_len);
  if (ctx->out->AppendModule(m, build_id, path)) ++ctx->written;
  return 0;
}

int ReadGeneration(dl_phdr_info* info, size_t size, void* arg) {
  if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
    *static_cast<uint64_t*>(arg) = info->dlpi_adds + (info->dlpi_subs << 32);
  }
  return 1;  // one object is enough
}

uint64_t Fnv1a(const uint8_t* p, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

struct CodeContext {
  CodeRange* out;
  size_t max;
  size_t count;
  uintptr_t page;
};

int ListCode(dl_phdr_info* info, size_t, void* arg) {
  auto* ctx = static_cast<CodeContext*>(arg);
  const uint8_t* build_id = nullptr;
  uint16_t id_len = FindBuildId(info, &build_id);
  const char* name = info->dlpi_name ? info->dlpi_name : "";
  uint64_t id = id_len ? Fnv1a(build_id, id_len)
                       : Fnv1a(reinterpret_cast<const uint8_t*>(name), strlen(name), 0x84222325cbf29ce4ull);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X) || ph.p_memsz == 0) continue;
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    uintptr_t hi = lo + ph.p_memsz;
    if (ctx->count < ctx->max) {
      ctx->out[ctx->count] = CodeRange{lo & ~(ctx->page - 1), (hi + ctx->page - 1) & ~(ctx->page - 1), id};
    }
    ++ctx->count;
  }
  return 0;
}

}  // namespace

size_t LoadedCode(CodeRange* out, size_t max) {
  long page = sysconf(_SC_PAGESIZE);
  CodeContext ctx{out, max, 0, page > 0 ? static_cast<uintptr_t>(page) : 4096};
  dl_iterate_phdr(ListCode, &ctx);
  return ctx.count;
}

uint64_t ModulesGeneration() {
  uint64_t gen = 0;
  dl_iterate_phdr(ReadGeneration, &gen);
  return gen ^ (UnloadEpoch() * 0x9e3779b97f4a7c15ull);
}

uint32_t WriteModules(FrameWriter* out, const char* exe_path) {
  if (!out->Append(wire::FrameType::kModulesReset, nullptr, 0)) return 0;
  // The epoch is read before the objects: a dlclose that begins while they
  // are visited moves it after this read, so an object it unmaps is listed
  // under the epoch before (its last), never under the one in which another
  // object may take its place. The sender's ModulesGeneration() read the
  // epoch before this one: if it moved in between, the next round sends
  // another map.
  uint32_t epoch = wire::kEpochStamped | static_cast<uint32_t>(UnloadEpoch() & (wire::kEpochStamped - 1));
  WriteContext ctx{out, exe_path, epoch, 0, true};
  dl_iterate_phdr(WriteOne, &ctx);
  return ctx.written;
}


namespace {

// The published map: written under g_writer, read as a sequence lock (odd
// while a writer writes). Mapped at the first publish; a forked child
// shares it copy-on-write, as it shares the objects it lists.
constexpr size_t kPublishedBytes = 1u << 20;
uint8_t* g_map = nullptr;
std::atomic<uint64_t> g_sequence{0};
std::atomic<size_t> g_map_size{0};
std::atomic<bool> g_writer{false};
uint64_t g_map_generation = 0;  // under g_writer
char g_exe[wire::kMaxPathBytes + 1];

}  // namespace

bool PublishModules(uint64_t stacks) {
  uint64_t deadline = 0;
  auto acquired = [] {
    bool free = false;
    return g_writer.compare_exchange_strong(free, true, std::memory_order_acquire);
  };
  if (!YieldUntil(acquired, &deadline)) return false;
  // Read before the map's objects, as WriteModules reads the epoch first.
  const uint64_t generation = ModulesGeneration();
  const uint64_t sequence = g_sequence.load(std::memory_order_relaxed);
  bool ok = true;
  if (sequence == 0 || generation != g_map_generation) {
    if (!g_map) g_map = static_cast<uint8_t*>(MapZeroed(kPublishedBytes));
    if (!g_exe[0]) {
      const long n = sys::Readlink("/proc/self/exe", g_exe, sizeof(g_exe) - 1);
      g_exe[n > 0 ? n : 0] = '\0';
    }
    ok = g_map != nullptr;
    if (ok) {
      g_sequence.store(sequence + 1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
      FrameWriter out(g_map, kPublishedBytes);
      WriteModules(&out, g_exe);
      g_map_size.store(out.size(), std::memory_order_relaxed);
      g_map_generation = generation;
      g_sequence.store(sequence + 2, std::memory_order_release);
    }
  }
  // A stack interned meanwhile by another thread checks again.
  if (ok) g_modules_checked_stacks.store(stacks, std::memory_order_relaxed);
  g_writer.store(false, std::memory_order_release);
  return ok;
}

uint64_t PublishedModulesSequence() { return g_sequence.load(std::memory_order_acquire); }

size_t CopyPublishedModules(uint8_t* out, size_t capacity, uint64_t* sequence) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint64_t before = g_sequence.load(std::memory_order_acquire);
    if (before == 0) return 0;
    if (before & 1) {
      sys::SchedYield();
      continue;
    }
    const size_t size = g_map_size.load(std::memory_order_relaxed);
    if (size > capacity) return 0;
    memcpy(out, g_map, size);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (g_sequence.load(std::memory_order_relaxed) == before) {
      *sequence = before;
      return size;
    }
  }
  return 0;
}

void ModulesForkChild() {
  if (g_writer.load(std::memory_order_relaxed)) g_writer.store(false, std::memory_order_relaxed);
}

}  // namespace heapwatch::preload
