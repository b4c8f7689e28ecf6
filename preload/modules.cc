#include "modules.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "descriptors.h"
#include "raw_memory.h"
#include "raw_syscall.h"
#include "text.h"
#include "unloaded_code.h"

namespace heapwatch::preload {

constinit std::atomic<uint64_t> g_unload_epoch{0};

namespace {

// memcmp and memchr, written out: either would be one more symbol the loader
// looks up at every exec under the shim (~770 instructions each, callgrind).
bool Same(const void* a, const void* b, size_t n) {
  const auto* x = static_cast<const uint8_t*>(a);
  const auto* y = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return false;
  }
  return true;
}

const char* Find(const char* p, char c, size_t n) {
  for (const char* end = p + n; p < end; ++p) {
    if (*p == c) return p;
  }
  return nullptr;
}

// Finds NT_GNU_BUILD_ID among the notes in [p, end): its length (at most
// wire::kMaxBuildIdBytes), *id pointing at it; 0 if there is none.
uint16_t BuildIdInNotes(const uint8_t* p, const uint8_t* end, const uint8_t** id) {
  while (p + sizeof(ElfW(Nhdr)) <= end) {
    const auto* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
    const uint8_t* name = p + sizeof(ElfW(Nhdr));
    const uint8_t* desc = name + ((n->n_namesz + 3) & ~3u);
    const uint8_t* next = desc + ((n->n_descsz + 3) & ~3u);
    if (next > end) break;
    if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && Same(name, "GNU", 4)) {
      *id = desc;
      return static_cast<uint16_t>(n->n_descsz > wire::kMaxBuildIdBytes ? wire::kMaxBuildIdBytes
                                                                         : n->n_descsz);
    }
    p = next;
  }
  return 0;
}

// Finds NT_GNU_BUILD_ID in the object's PT_NOTE segments (LoadedCode: a
// thread of glibc's, inside dl_iterate_phdr).
uint16_t FindBuildId(const dl_phdr_info* info, const uint8_t** id) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const auto* p = reinterpret_cast<const uint8_t*>(info->dlpi_addr + ph.p_vaddr);
    if (uint16_t len = BuildIdInNotes(p, p + ph.p_memsz, id)) return len;
  }
  return 0;
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
                       : Fnv1a(reinterpret_cast<const uint8_t*>(name), Length(name), 0x84222325cbf29ce4ull);
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

// Reads `n` bytes of this process's memory at `address`: false where it is
// not mapped readable (an object a dlclose unmapped meanwhile), where a
// plain read would fault.
bool ReadMemory(uintptr_t address, void* out, size_t n) {
  iovec local{out, n};
  iovec remote{reinterpret_cast<void*>(address), n};
  return InlineSyscall(SYS_process_vm_readv, sys::Getpid(), reinterpret_cast<long>(&local), 1,
                       reinterpret_cast<long>(&remote), 1, 0) == static_cast<long>(n);
}

// One line of /proc/self/maps: "start-end perms offset dev inode   path".
struct Mapping {
  uintptr_t start, end;
  uint64_t offset, inode;
  bool executable;
  const char* path;  // "" for an anonymous mapping; not NUL-terminated
  size_t path_len;
};

uint64_t Hex(const char** p, const char* end) {
  uint64_t v = 0;
  for (; *p < end; ++*p) {
    const char c = **p;
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) break;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  return v;
}

uint64_t Decimal(const char** p, const char* end) {
  uint64_t v = 0;
  for (; *p < end && **p >= '0' && **p <= '9'; ++*p) v = v * 10 + static_cast<uint64_t>(**p - '0');
  return v;
}

void SkipTo(const char** p, const char* end, char c) {
  while (*p < end && **p != c) ++*p;
  if (*p < end) ++*p;
}

bool ParseMapping(const char* p, const char* end, Mapping* m) {
  m->start = Hex(&p, end);
  if (p >= end || *p != '-') return false;
  ++p;
  m->end = Hex(&p, end);
  if (end - p < 6 || *p != ' ') return false;
  m->executable = p[3] == 'x';  // " rwxp "
  p += 6;
  m->offset = Hex(&p, end);
  SkipTo(&p, end, ' ');  // the device
  SkipTo(&p, end, ' ');
  m->inode = Decimal(&p, end);
  while (p < end && *p == ' ') ++p;
  m->path = p;
  m->path_len = static_cast<size_t>(end - p);
  constexpr char kDeleted[] = " (deleted)";
  constexpr size_t kDeletedLen = sizeof(kDeleted) - 1;
  if (m->path_len > kDeletedLen && Same(end - kDeletedLen, kDeleted, kDeletedLen)) {
    m->path_len -= kDeletedLen;
  }
  return true;
}

// /proc/self/maps opened before the process took /proc out of its reach,
// and the process that opened it (KeepMappingsReadable).
OwnDescriptor g_kept_maps;
std::atomic<uint32_t> g_kept_maps_pid{0};

// ForEachMapping's buffer: one reader at a time (the sender), and static, as
// a path may be 4 KiB. Large arrays go after the small globals (raw_memory.h).
char g_maps_buffer[16 << 10] HEAPWATCH_LARGE_ZEROED;

// Calls on_mapping(const Mapping&) for each line of /proc/self/maps; false
// if it cannot be read.
template <typename OnMapping>
bool ForEachMapping(OnMapping on_mapping) {
  char* const buf = g_maps_buffer;
  constexpr size_t kBufBytes = sizeof(g_maps_buffer);
  int fd = static_cast<int>(sys::Open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
  const bool kept = fd < 0;
  if (kept) {
    if (g_kept_maps_pid.load(std::memory_order_acquire) != static_cast<uint32_t>(sys::Getpid()) ||
        !g_kept_maps.StillOurs()) {
      return false;
    }
    fd = g_kept_maps.fd();
  }
  size_t have = 0;
  uint64_t offset = 0;  // read from the start again each time (pread)
  bool ok = true;
  for (;;) {
    const long n = sys::Pread(fd, buf + have, kBufBytes - have, offset);
    if (n > 0) offset += static_cast<uint64_t>(n);
    if (n < 0) {
      ok = false;
      break;
    }
    have += static_cast<size_t>(n);
    size_t used = 0;
    while (const char* nl = Find(buf + used, '\n', have - used)) {
      Mapping m;
      if (ParseMapping(buf + used, nl, &m)) on_mapping(m);
      used = static_cast<size_t>(nl - buf) + 1;
    }
    if (n == 0) break;
    if (used == 0 && have == kBufBytes) {  // a line longer than the buffer
      ok = false;
      break;
    }
    memmove(buf, buf + used, have - used);
    have -= used;
  }
  if (!kept) sys::Close(fd);
  return ok;
}

bool FileBacked(const Mapping& m) { return m.inode != 0 && m.path_len > 0 && m.path[0] == '/'; }

uint64_t MixMapping(uint64_t h, const Mapping& m) {
  const uint64_t words[4] = {m.start, m.end, m.offset, m.inode};
  return Fnv1a(reinterpret_cast<const uint8_t*>(words), sizeof(words), h);
}

uint64_t MixEpoch(uint64_t h, uint64_t epoch) { return (h ^ epoch) * 0x9e3779b97f4a7c15ull | 1; }

constexpr int kMaxPhdrs = 64;

// The object whose first mapping (file offset 0) starts at `base`: its
// program headers, read from memory. False if it is no 64-bit ELF object.
bool ReadProgramHeaders(uintptr_t base, ElfW(Phdr)* phdrs, int* count) {
  ElfW(Ehdr) eh;
  if (!ReadMemory(base, &eh, sizeof(eh)) || !Same(eh.e_ident, ELFMAG, SELFMAG) ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 ||
      eh.e_phnum > kMaxPhdrs) {
    return false;
  }
  *count = eh.e_phnum;
  return ReadMemory(base + eh.e_phoff, phdrs, eh.e_phnum * sizeof(ElfW(Phdr)));
}

// The object's GNU build-id from its PT_NOTE segments, read from memory.
uint16_t ReadBuildId(uintptr_t bias, const ElfW(Phdr)* phdrs, int count, uint8_t* id) {
  for (int i = 0; i < count; ++i) {
    if (phdrs[i].p_type != PT_NOTE) continue;
    uint8_t notes[1024];
    const size_t size = phdrs[i].p_memsz < sizeof(notes) ? phdrs[i].p_memsz : sizeof(notes);
    if (!ReadMemory(bias + phdrs[i].p_vaddr, notes, size)) continue;
    const uint8_t* found = nullptr;
    if (uint16_t len = BuildIdInNotes(notes, notes + size, &found)) {
      memcpy(id, found, len);
      return len;
    }
  }
  return 0;
}

// Appends the kModule of an object with these program headers, loaded with
// this bias, if it has executable code.
bool AppendModule(FrameWriter* out, uint32_t epoch, uintptr_t bias, const ElfW(Phdr)* phdrs, int count,
                  const char* path, size_t path_len) {
  wire::Module m{};
  m.load_bias = bias;
  m.epoch = epoch;
  bool have_exec = false;
  for (int i = 0; i < count; ++i) {
    const ElfW(Phdr)& ph = phdrs[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    const uint64_t lo = m.load_bias + ph.p_vaddr, hi = lo + ph.p_memsz;
    if (!have_exec || lo < m.start) {
      m.start = lo;
      m.file_offset = ph.p_offset;
    }
    if (!have_exec || hi > m.end) m.end = hi;
    have_exec = true;
  }
  if (!have_exec) return false;
  uint8_t build_id[wire::kMaxBuildIdBytes];
  m.build_id_len = ReadBuildId(m.load_bias, phdrs, count, build_id);
  m.path_len = static_cast<uint16_t>(path_len > wire::kMaxPathBytes ? wire::kMaxPathBytes : path_len);
  return out->AppendModule(m, build_id, path);
}

// The object mapped from `path` whose first mapping starts at `base`.
bool AppendMappedObject(FrameWriter* out, uint32_t epoch, uintptr_t base, const char* path, size_t path_len) {
  ElfW(Phdr) phdrs[kMaxPhdrs];
  int count = 0;
  if (!ReadProgramHeaders(base, phdrs, &count)) return false;
  // The first loadable segment maps file offset 0 at `base`: the bias is
  // what moves its (page-aligned) address there.
  for (int i = 0; i < count; ++i) {
    if (phdrs[i].p_type != PT_LOAD) continue;
    return AppendModule(out, epoch, base - (phdrs[i].p_vaddr & ~uintptr_t{4095}), phdrs, count, path, path_len);
  }
  return false;
}

// Without /proc: the loader's list of objects (LoadedObjects).
const ElfW(Phdr)* g_main_phdrs = nullptr;
int g_main_phnum = 0;
const r_debug* g_r_debug = nullptr;

struct LoadedObject {
  uintptr_t bias;
  uintptr_t name;  // the loader's copy of its path
};
constexpr size_t kMaxObjects = 1024;
// The sender's copy of the list (MappingsFingerprint, WriteLoadedObjects).
LoadedObject g_objects[kMaxObjects] HEAPWATCH_LARGE_ZEROED;

// One read of the loader's list (its public part of each link_map); 0 where
// it is not consistent (the loader is adding or removing objects).
size_t ReadLoadedObjects(LoadedObject* out) {
  r_debug debug;
  if (!g_r_debug || !ReadMemory(reinterpret_cast<uintptr_t>(g_r_debug), &debug, sizeof(debug)) ||
      debug.r_state != r_debug::RT_CONSISTENT) {
    return 0;
  }
  size_t n = 0;
  for (auto at = reinterpret_cast<uintptr_t>(debug.r_map); at != 0 && n < kMaxObjects;) {
    link_map map;
    if (!ReadMemory(at, &map, sizeof(map))) return 0;
    out[n++] = {map.l_addr, reinterpret_cast<uintptr_t>(map.l_name)};
    at = reinterpret_cast<uintptr_t>(map.l_next);
  }
  return n;
}

// The loader's list, read twice, each read between two that found it
// consistent: another thread's dlopen or dlclose may change it meanwhile,
// under a lock the sender must not take. 0 if the reads did not agree.
size_t LoadedObjects(LoadedObject* out) {
  static LoadedObject again[kMaxObjects] HEAPWATCH_LARGE_ZEROED;
  const size_t n = ReadLoadedObjects(out);
  if (n == 0 || ReadLoadedObjects(again) != n || !Same(out, again, n * sizeof(LoadedObject))) return 0;
  return n;
}

// Reads the NUL-terminated string at `at` (at most `size` - 1 bytes) into
// `out`, a page at most at a time: the string may end just before an
// unmapped page. Returns its length.
size_t ReadString(uintptr_t at, char* out, size_t size) {
  size_t len = 0;
  while (len + 1 < size) {
    size_t chunk = kPageBytes - ((at + len) & (kPageBytes - 1));
    if (chunk > size - 1 - len) chunk = size - 1 - len;
    if (!ReadMemory(at + len, out + len, chunk)) break;
    if (const char* nul = Find(out + len, 0, chunk)) return static_cast<size_t>(nul - out);
    len += chunk;
  }
  out[len] = 0;
  return len;
}

uint64_t ObjectsFingerprint(const LoadedObject* objects, size_t n, uint64_t epoch) {
  return MixEpoch(Fnv1a(reinterpret_cast<const uint8_t*>(objects), n * sizeof(LoadedObject)), epoch);
}

// The loader's objects as kModules: the main program (first, nameless: its
// program headers from the start's walk, its path unknown without /proc, as
// before), then each object whose ELF header is at its bias (a shared object
// linked at address 0); the vdso is left out.
uint32_t WriteLoadedObjects(FrameWriter* out, uint32_t epoch, uint64_t epoch_now, uint64_t* fingerprint) {
  LoadedObject* objects = g_objects;
  const size_t n = LoadedObjects(objects);
  if (n == 0) return 0;
  static char path[wire::kMaxPathBytes + 1] HEAPWATCH_LARGE_ZEROED;
  uint32_t written = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t path_len = objects[i].name ? ReadString(objects[i].name, path, sizeof(path)) : 0;
    if (i == 0) {
      if (g_main_phdrs) {
        written += AppendModule(out, epoch, objects[i].bias, g_main_phdrs, g_main_phnum, path, 0);
      }
      continue;
    }
    if (path_len == 0 || StartsWith(path, "linux-vdso") || StartsWith(path, "linux-gate")) continue;
    written += AppendMappedObject(out, epoch, objects[i].bias, path, path_len);
  }
  *fingerprint = ObjectsFingerprint(objects, n, epoch_now);
  return written;
}

}  // namespace

size_t LoadedCode(CodeRange* out, size_t max) {
  CodeContext ctx{out, max, 0, kPageBytes};
  dl_iterate_phdr(ListCode, &ctx);
  return ctx.count;
}

void KeepMappingsReadable() {
  const auto pid = static_cast<uint32_t>(sys::Getpid());
  if (g_kept_maps_pid.load(std::memory_order_acquire) == pid && g_kept_maps.StillOurs()) return;
  g_kept_maps_pid.store(0, std::memory_order_release);
  const long fd = sys::Open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && g_kept_maps.Adopt(static_cast<int>(fd), S_IFREG)) {
    g_kept_maps_pid.store(pid, std::memory_order_release);
  }
}

void NoteMainProgram(const void* phdrs, int count) {
  g_main_phdrs = static_cast<const ElfW(Phdr)*>(phdrs);
  g_main_phnum = count;
}

void NoteLoaderDebug(const void* r_debug) { g_r_debug = static_cast<const struct r_debug*>(r_debug); }

uint64_t MappingsFingerprint() {
  uint64_t h = 0xcbf29ce484222325ull;
  const uint64_t epoch = UnloadEpoch();
  if (!ForEachMapping([&h](const Mapping& m) {
        if (m.executable && FileBacked(m)) h = MixMapping(h, m);
      })) {
    const size_t n = LoadedObjects(g_objects);
    return n == 0 ? 0 : ObjectsFingerprint(g_objects, n, epoch);
  }
  return MixEpoch(h, epoch);
}

uint32_t WriteModules(FrameWriter* out, uint64_t* fingerprint) {
  *fingerprint = 0;
  if (!out->Append(wire::FrameType::kModulesReset, nullptr, 0)) return 0;
  // The epoch is read before the mappings: a dlclose that begins while they
  // are read moves it after this read, so an object it unmaps is listed
  // under the epoch before (its last), never under the one in which another
  // object may take its place.
  const uint64_t epoch_now = UnloadEpoch();
  const uint32_t epoch = wire::kEpochStamped | static_cast<uint32_t>(epoch_now & (wire::kEpochStamped - 1));
  uint64_t h = 0xcbf29ce484222325ull;
  uint32_t written = 0;
  // Each object's mapping at file offset 0 (its ELF header) comes first.
  const bool ok = ForEachMapping([&](const Mapping& m) {
    if (!FileBacked(m)) return;
    if (m.executable) h = MixMapping(h, m);
    if (m.offset != 0) return;
    written += AppendMappedObject(out, epoch, m.start, m.path, m.path_len);
  });
  if (ok) {
    *fingerprint = MixEpoch(h, epoch_now);
    return written;
  }
  return WriteLoadedObjects(out, epoch, epoch_now, fingerprint);
}

}  // namespace heapwatch::preload
