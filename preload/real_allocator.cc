#include "real_allocator.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "dl_functions.h"
#include "libc_functions.h"
#include "loader_lock.h"
#include "modules.h"
#include "raw_memory.h"
#include "raw_syscall.h"
#include "text.h"

namespace heapwatch::preload {

// Not among the small globals (raw_memory.h): there it kept those the start
// and fork touch 256 KiB apart, on pages of their own.
alignas(64) char g_arena[kArenaBytes] HEAPWATCH_LARGE_ZEROED;

namespace {

constexpr size_t kArenaHeader = 16;
std::atomic<size_t> g_arena_used{0};
std::atomic<size_t> g_arena_block_count{0};
// Block addresses by claim order: 0 = claimed, not yet written; kNoBlock =
// the claim failed (arena full).
std::atomic<uintptr_t> g_arena_blocks[kMaxArenaBlocks];
constexpr uintptr_t kNoBlock = 1;
// Not zero-initialised: in .data, whose page the loader's relocations have
// written already, rather than read first on a .bss page and then written
// (two page faults: the zero page, then its copy).
enum : int { kUnresolved = 1, kResolving = 2, kResolved = 3 };
std::atomic<int> g_resolve_state{kUnresolved};
std::atomic<bool> g_libc_noted{false};  // g_libc is set (NoteLibcFunctions)

void* BootMalloc(size_t n) {
  return ResolveRealAllocator() ? g_real.malloc(n) : ArenaAlloc(n, 16);
}
void BootFree(void* p) {
  if (InArena(p)) return;
  if (ResolveRealAllocator()) g_real.free(p);
}
void* BootCalloc(size_t n, size_t m) {
  size_t total;
  if (__builtin_mul_overflow(n, m, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return ResolveRealAllocator() ? g_real.calloc(n, m) : ArenaAlloc(total, 16);  // arena is zeroed
}
void* BootRealloc(void* p, size_t n) {
  if (ResolveRealAllocator()) return g_real.realloc(p, n);
  void* q = ArenaAlloc(n, 16);
  if (q && p) {
    size_t old = InArena(p) ? ArenaBlockSize(p) : 0;
    memcpy(q, p, old < n ? old : n);
  }
  return q;
}
int BootPosixMemalign(void** out, size_t align, size_t n) {
  if (ResolveRealAllocator()) return g_real.posix_memalign(out, align, n);
  *out = ArenaAlloc(n, align);
  return *out ? 0 : ENOMEM;
}
void* BootAlignedAlloc(size_t align, size_t n) {
  return ResolveRealAllocator() ? g_real.aligned_alloc(align, n) : ArenaAlloc(n, align);
}
void* BootMemalign(size_t align, size_t n) {
  return ResolveRealAllocator() ? g_real.memalign(align, n) : ArenaAlloc(n, align);
}
void* BootValloc(size_t n) {
  return ResolveRealAllocator() ? g_real.valloc(n) : ArenaAlloc(n, kPageBytes);
}
void* BootPvalloc(size_t n) {
  return ResolveRealAllocator() ? g_real.pvalloc(n)
                                : ArenaAlloc((n + kPageBytes - 1) & ~(kPageBytes - 1), kPageBytes);
}
size_t BootUsableSize(void* p) {
  if (InArena(p)) return ArenaBlockSize(p);
  return ResolveRealAllocator() ? g_real.malloc_usable_size(p) : 0;
}

// When the allocator underneath lacks an aligned entry point, RTLD_NEXT finds
// glibc's, whose blocks the allocator's free would not recognise. These build
// the missing ones on the allocator's posix_memalign instead.
void* EmulatedMemalign(size_t align, size_t n) {
  if (align < sizeof(void*)) align = sizeof(void*);
  if ((align & (align - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  void* p = nullptr;
  int rc = g_real.posix_memalign(&p, align, n);
  if (rc != 0) {
    errno = rc;
    return nullptr;
  }
  return p;
}
void* EmulatedValloc(size_t n) { return EmulatedMemalign(kPageBytes, n); }
void* EmulatedPvalloc(size_t n) {
  const size_t page = kPageBytes;
  size_t rounded = n == 0 ? page : (n + page - 1) & ~(page - 1);
  if (rounded < n) {
    errno = ENOMEM;
    return nullptr;
  }
  return EmulatedMemalign(page, rounded);
}

// The names the shim resolves at start, all found in one walk over the
// loaded objects (FindDefinitions): per object, each name's lookup in its
// hash table is a few dozen instructions, while a dlsym is ~1,000 and a
// walk ~600 (callgrind, /bin/true: the start's twelve dlsym calls and walks
// were ~16,000 of its ~211,000 instructions).
enum Name : int {
  kMalloc, kFree, kCalloc, kRealloc, kPosixMemalign, kAlignedAlloc, kMemalign, kValloc, kPvalloc,
  kUsableSize, kNew, kDelete,
  // glibc's own entry points: a fallback should the walk find no malloc
  // (not imported: each import is a lookup at every exec).
  kLibcMalloc, kLibcFree, kLibcCalloc, kLibcRealloc, kLibcMemalign,
  // The loader's globals (loader_lock.h), in ld.so, and glibc's count of
  // threads in one flag (2.32 and later; not imported, as above).
  kRtldGlobal, kSingleThreaded,
  // The loader's debugger interface (<link.h>), for module maps where /proc
  // is missing (modules.h).
  kRDebug,
  // glibc's functions that the shim calls without importing them
  // (libc_functions.h).
#define HEAPWATCH_LIBC_NAME(name, type) kLibc_##name,
  HEAPWATCH_LIBC_FUNCTIONS(HEAPWATCH_LIBC_NAME)
  HEAPWATCH_NEXT_FUNCTIONS(HEAPWATCH_LIBC_NAME)
#undef HEAPWATCH_LIBC_NAME
  kNameCount
};
constexpr const char* kNames[kNameCount] = {
    "malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc",
    "pvalloc", "malloc_usable_size", "_Znwm", "_ZdlPv", "__libc_malloc", "__libc_free", "__libc_calloc",
    "__libc_realloc", "__libc_memalign", "_rtld_global",
    "__libc_single_threaded", "_r_debug",
#define HEAPWATCH_LIBC_STRING(name, type) #name,
    HEAPWATCH_LIBC_FUNCTIONS(HEAPWATCH_LIBC_STRING)
    HEAPWATCH_NEXT_FUNCTIONS(HEAPWATCH_LIBC_STRING)
#undef HEAPWATCH_LIBC_STRING
};

// The names' hashes in GNU hash tables, computed at compile time.
constexpr uint32_t GnuHash(const char* name) {
  uint32_t hash = 5381;
  for (const char* c = name; *c; ++c) hash = hash * 33 + static_cast<unsigned char>(*c);
  return hash;
}
struct NameHashes {
  uint32_t of[kNameCount];
};
constexpr NameHashes kHashes = [] {
  NameHashes h{};
  for (int i = 0; i < kNameCount; ++i) h.of[i] = GnuHash(kNames[i]);
  return h;
}();
static_assert(kHashes.of[kMalloc] == 0x0d39ad3d, "the GNU hash of \"malloc\"");

// An object's dynamic symbols, as its GNU hash table finds them.
struct SymbolTable {
  const ElfW(Addr)* bloom;
  uint32_t bloom_words, bloom_shift;
  const uint32_t* buckets;
  const uint32_t* chain;
  uint32_t nbuckets, symoffset;
  const ElfW(Sym)* symbols;
  const char* strings;
  const ElfW(Half)* versions;  // nullptr: no versions
};

// False for an object without a GNU hash table (no linker has omitted it
// for years; the vDSO, which defines no malloc): it counts as defining none.
bool ReadSymbolTable(const dl_phdr_info* info, SymbolTable* t) {
  const ElfW(Dyn)* dynamic = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
      dynamic = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    }
  }
  if (!dynamic) return false;
  uintptr_t gnu_hash = 0, symtab = 0, strtab = 0, versym = 0;
  for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
    // ld.so relocates these in place on x86-64, but not in the vDSO.
    uintptr_t at = d->d_un.d_ptr < info->dlpi_addr ? d->d_un.d_ptr + info->dlpi_addr : d->d_un.d_ptr;
    if (d->d_tag == DT_GNU_HASH) gnu_hash = at;
    if (d->d_tag == DT_SYMTAB) symtab = at;
    if (d->d_tag == DT_STRTAB) strtab = at;
    if (d->d_tag == DT_VERSYM) versym = at;
  }
  if (!gnu_hash || !symtab || !strtab) return false;
  const auto* header = reinterpret_cast<const uint32_t*>(gnu_hash);
  t->nbuckets = header[0];
  t->symoffset = header[1];
  t->bloom_words = header[2];
  t->bloom_shift = header[3];
  if (t->nbuckets == 0 || t->bloom_words == 0 || (t->bloom_words & (t->bloom_words - 1)) != 0) return false;
  t->bloom = reinterpret_cast<const ElfW(Addr)*>(gnu_hash + 16);
  t->buckets = reinterpret_cast<const uint32_t*>(gnu_hash + 16 + size_t{header[2]} * sizeof(ElfW(Addr)));
  t->chain = t->buckets + t->nbuckets;
  t->symbols = reinterpret_cast<const ElfW(Sym)*>(symtab);
  t->strings = reinterpret_cast<const char*>(strtab);
  t->versions = reinterpret_cast<const ElfW(Half)*>(versym);
  return true;
}

// The object's own definition of `name` (not an import; its default
// version, not a hidden one), or nullptr.
const ElfW(Sym)* DefinedSymbol(const SymbolTable& t, const char* name, uint32_t hash) {
  // The table's Bloom filter first, as ld.so's lookup does: most objects
  // hold most names not, and this turns them away without the buckets.
  constexpr uint32_t kBits = sizeof(ElfW(Addr)) * 8;
  const ElfW(Addr) word = t.bloom[(hash / kBits) & (t.bloom_words - 1)];
  const ElfW(Addr) bits =
      (ElfW(Addr){1} << (hash % kBits)) | (ElfW(Addr){1} << ((hash >> t.bloom_shift) % kBits));
  if ((word & bits) != bits) return nullptr;
  for (uint32_t i = t.buckets[hash % t.nbuckets]; i >= t.symoffset; ++i) {
    uint32_t h = t.chain[i - t.symoffset];
    if ((h | 1) == (hash | 1) && Equal(t.strings + t.symbols[i].st_name, name) &&
        !(t.versions && (t.versions[i] & 0x8000))) {  // 0x8000: a hidden (non-default) version
      return t.symbols[i].st_shndx != SHN_UNDEF ? &t.symbols[i] : nullptr;
    }
    if (h & 1) break;  // the end of the bucket's chain
  }
  return nullptr;
}

bool Holds(const dl_phdr_info* info, uintptr_t addr) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && addr - (info->dlpi_addr + ph.p_vaddr) < ph.p_memsz) return true;
  }
  return false;
}

// Which loaded object holds `addr`: its program headers' address, unique per
// object, or nullptr. Compares addresses with the PT_LOAD segments only;
// dladdr would also search the object's symbol table for the nearest symbol,
// ~75k instructions a call in libc, over half of a short process's start-up
// with the shim (callgrind, /bin/true).
const void* ObjectOf(const void* addr) {
  struct Query {
    uintptr_t addr;
    const void* object;
  } q{reinterpret_cast<uintptr_t>(addr), nullptr};
  if (!addr) return nullptr;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto* q = static_cast<Query*>(arg);
        if (!Holds(info, q->addr)) return 0;
        q->object = info->dlpi_phdr;
        return 1;
      },
      &q);
  return q.object;
}

// A name's first definition, in load order (the order of symbol lookup for
// the objects loaded at start), among the objects on one side of the shim:
// its address, and the object that defines it (program headers' address, as
// ObjectOf gives, and file name).
struct Definition {
  void* address = nullptr;
  const void* object = nullptr;
  const char* object_name = nullptr;
  bool indirect = false;  // an indirect function: address is its resolver's
  size_t size = 0;        // the symbol's
};

struct Definitions {
  Definition before[kNameCount];  // in the objects before the shim's
  Definition after[kNameCount];   // after it: what dlsym(RTLD_NEXT) finds
};

// What ld.so would have bound the shim's references to: the first
// definition in load order (before the shim, else after it); and for
// after_shim, what dlsym(RTLD_NEXT) finds. An indirect function's address
// is its resolver's, not the function's: null until FindDefinitions has it
// from dlsym.
void NoteLibcFunctions(const Definitions& found) {
  LibcFunctions f;
#define HEAPWATCH_LIBC_SET(name, type)                                                \
  {                                                                                   \
    const Definition& d = found.before[kLibc_##name].address ? found.before[kLibc_##name] \
                                                             : found.after[kLibc_##name]; \
    f.name = d.indirect ? nullptr : reinterpret_cast<type>(d.address);                 \
  }
  HEAPWATCH_LIBC_FUNCTIONS(HEAPWATCH_LIBC_SET)
#undef HEAPWATCH_LIBC_SET
#define HEAPWATCH_NEXT_SET(name, type)                 \
  {                                                    \
    const Definition& d = found.after[kLibc_##name];   \
    f.after_shim.name = d.indirect ? nullptr : reinterpret_cast<type>(d.address); \
  }
  HEAPWATCH_NEXT_FUNCTIONS(HEAPWATCH_NEXT_SET)
#undef HEAPWATCH_NEXT_SET
  g_libc = f;
  g_libc_noted.store(true, std::memory_order_release);
}

// One walk over the loaded objects for all the names. An object before the
// shim that defines malloc is the executable or an allocator preloaded
// first; after it, the first definitions are those dlsym(RTLD_NEXT) finds,
// taken from the hash tables: a dlsym that finds nothing makes its error
// message with malloc (in a C program, operator new: two blocks in the
// bootstrap arena, whose pins and write were 3 page faults of every exec).
Definitions FindDefinitions() {
  struct Walk {
    uintptr_t shim;  // an address in the shim's code
    bool past_shim;
    int missing_after;
    Definitions found;
    bool seen_main;
  } walk{reinterpret_cast<uintptr_t>(&ResolveRealAllocator), false, kNameCount, {}, false};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto* w = static_cast<Walk*>(arg);
        if (!w->seen_main) {  // the main program comes first
          w->seen_main = true;
          NoteMainProgram(info->dlpi_phdr, info->dlpi_phnum);
        }
        if (!w->past_shim && Holds(info, w->shim)) {
          w->past_shim = true;
          return 0;
        }
        SymbolTable table;
        if (!ReadSymbolTable(info, &table)) return 0;
        Definition* side = w->past_shim ? w->found.after : w->found.before;
        for (int i = 0; i < kNameCount; ++i) {
          if (side[i].object) continue;
          const ElfW(Sym)* sym = DefinedSymbol(table, kNames[i], kHashes.of[i]);
          if (!sym) continue;
          side[i] = {reinterpret_cast<void*>(info->dlpi_addr + sym->st_value), info->dlpi_phdr,
                     info->dlpi_name, ELF64_ST_TYPE(sym->st_info) == STT_GNU_IFUNC, sym->st_size};
          if (w->past_shim) --w->missing_after;
        }
        return w->past_shim && w->missing_after == 0 ? 1 : 0;
      },
      &walk);
  // glibc's functions first: DlSym, below, is one of them.
  NoteLibcFunctions(walk.found);
  // No allocator's entry point is an indirect function that we know; should
  // one be, the loader runs its resolver (not from inside the walk, which
  // holds the loader's lock). This definition is the one dlsym finds.
  bool indirect = false;
  for (int i = 0; i < kNameCount; ++i) {
    for (Definition* d : {&walk.found.before[i], &walk.found.after[i]}) {
      if (!d->indirect) continue;
      d->address = DlSym(d == &walk.found.after[i] ? RTLD_NEXT : RTLD_DEFAULT, kNames[i]);
      d->indirect = false;
      indirect = true;
    }
  }
  if (indirect) NoteLibcFunctions(walk.found);
  return walk.found;
}

// True if `name` is libstdc++'s file name ("libstdc++.so...").
bool IsLibstdcxx(const char* name) {
  if (!name) return false;
  const char* base = LastOf(name, '/');
  return StartsWith(base ? base + 1 : name, "libstdc++.so");
}

// Set at resolution: an object before the shim defines malloc, and its name.
bool g_other_allocator_first = false;
const char* g_preceding_object = nullptr;
Definition g_loader_globals;
Definition g_single_threaded;

}  // namespace

bool AllocatorPrecedes() { return g_other_allocator_first; }

const void* LoaderGlobals(size_t* size) {
  *size = g_loader_globals.size;
  return g_loader_globals.indirect ? nullptr : g_loader_globals.address;
}

bool GlibcSingleThreaded() {
  const auto* flag = static_cast<const volatile char*>(g_single_threaded.address);
  return flag && !g_single_threaded.indirect && *flag != 0;
}

const char* PrecedingAllocatorObject() {
  if (!g_other_allocator_first) return nullptr;
  return g_preceding_object ? g_preceding_object : "";
}

RealAllocator g_real = {BootMalloc,       BootFree,         BootCalloc,   BootRealloc,
                        BootPosixMemalign, BootAlignedAlloc, BootMemalign, BootValloc,
                        BootPvalloc,      BootUsableSize};

void* ArenaAlloc(size_t size, size_t alignment) {
  if (alignment < 16) alignment = 16;
  if ((alignment & (alignment - 1)) != 0 || size > kArenaBytes) return nullptr;
  size_t index = g_arena_block_count.fetch_add(1, std::memory_order_relaxed);
  if (index >= kMaxArenaBlocks) {  // ArenaBlocks reads no further than kMaxArenaBlocks
    errno = ENOMEM;
    return nullptr;
  }
  size_t used = g_arena_used.load(std::memory_order_relaxed);
  for (;;) {
    size_t start = (used + kArenaHeader + alignment - 1) & ~(alignment - 1);
    size_t end = start + size;
    if (end > kArenaBytes) {
      g_arena_blocks[index].store(kNoBlock, std::memory_order_release);
      errno = ENOMEM;
      return nullptr;
    }
    if (g_arena_used.compare_exchange_weak(used, end, std::memory_order_relaxed)) {
      memcpy(g_arena + start - sizeof(size_t), &size, sizeof(size));
      g_arena_blocks[index].store(reinterpret_cast<uintptr_t>(g_arena + start),
                                  std::memory_order_release);
      return g_arena + start;
    }
  }
}

size_t ArenaBlocks(uint64_t* out) {
  size_t claimed = g_arena_block_count.load(std::memory_order_acquire), n = 0;
  if (claimed > kMaxArenaBlocks) claimed = kMaxArenaBlocks;
  for (size_t i = 0; i < claimed; ++i) {
    // A thread that claimed an index is a few instructions from writing it.
    uintptr_t block = g_arena_blocks[i].load(std::memory_order_acquire);
    for (int spins = 0; block == 0 && spins < 100000; ++spins) {
      sys::SchedYield();
      block = g_arena_blocks[i].load(std::memory_order_acquire);
    }
    if (block > kNoBlock) out[n++] = block;
  }
  return n;
}

size_t ArenaBlockSize(const void* p) {
  size_t size;
  memcpy(&size, static_cast<const char*>(p) - sizeof(size_t), sizeof(size));
  return size;
}

bool ResolveRealAllocator() {
  int state = g_resolve_state.load(std::memory_order_acquire);
  if (state == kResolved) return true;
  if (state == kResolving) return false;  // re-entered from dlsym, or a racing thread
  if (!g_resolve_state.compare_exchange_strong(state, kResolving, std::memory_order_acq_rel)) {
    return state == kResolved;
  }
  // Objects come in load order, which for those loaded at start is the order
  // in which symbols are looked up: the executable, then LD_PRELOAD's.
  // dlsym(RTLD_DEFAULT, "malloc") cannot tell: a non-PIE executable that
  // takes malloc's address (Debian's python3 does) makes its own PLT entry
  // the address every object sees, while its calls still reach the first
  // definition, the shim's.
  const Definitions found = FindDefinitions();
  g_other_allocator_first = found.before[kMalloc].address != nullptr;
  g_preceding_object = found.before[kMalloc].object_name;
  g_loader_globals = found.after[kRtldGlobal];
  g_single_threaded = found.after[kSingleThreaded];
  if (!found.after[kRDebug].indirect) NoteLoaderDebug(found.after[kRDebug].address);
  // What the program's call of a name reaches without the shim: the
  // definition after the shim's (RTLD_NEXT), unless an object before it has
  // one. Where another allocator comes first (AllocatorPrecedes) the
  // program's calls go to it, not to the shim, except for the names it lacks
  // (reallocarray and the sized frees, which jemalloc 5.3 and gperftools
  // 2.10 do not define): those come to the shim, whose realloc and free must
  // then be that allocator's. glibc's would be handed blocks it does not own.
  auto chosen = [&](Name n) -> const Definition& {
    return g_other_allocator_first && found.before[n].address ? found.before[n] : found.after[n];
  };
  auto set = [&]<typename Fn>(Fn& slot, Name n, Name fallback = kNameCount) {
    void* f = chosen(n).address;
    if (!f && fallback != kNameCount) f = found.after[fallback].address;
    slot = reinterpret_cast<Fn>(f);
  };
  RealAllocator r;
  set(r.malloc, kMalloc, kLibcMalloc);
  set(r.free, kFree, kLibcFree);
  set(r.calloc, kCalloc, kLibcCalloc);
  set(r.realloc, kRealloc, kLibcRealloc);
  set(r.posix_memalign, kPosixMemalign);
  set(r.aligned_alloc, kAlignedAlloc);
  set(r.memalign, kMemalign, kLibcMemalign);
  set(r.valloc, kValloc);
  set(r.pvalloc, kPvalloc);
  set(r.malloc_usable_size, kUsableSize);

  // The object of what a name resolved to: the walk's, or, for a fallback
  // (no definition found), the loaded object that holds it.
  auto object_of = [&](Name n, void* f) {
    return f && f == chosen(n).address ? chosen(n).object : ObjectOf(f);
  };
  const void* home = object_of(kMalloc, reinterpret_cast<void*>(r.malloc));
  auto same_object = [&](Name n, void* f) { return home && object_of(n, f) == home; };
  if (r.posix_memalign && same_object(kPosixMemalign, reinterpret_cast<void*>(r.posix_memalign))) {
    g_real.posix_memalign = r.posix_memalign;  // the emulations below use it
    if (!same_object(kMemalign, reinterpret_cast<void*>(r.memalign))) r.memalign = EmulatedMemalign;
    if (!same_object(kAlignedAlloc, reinterpret_cast<void*>(r.aligned_alloc))) r.aligned_alloc = EmulatedMemalign;
    if (!same_object(kValloc, reinterpret_cast<void*>(r.valloc))) r.valloc = EmulatedValloc;
    if (!same_object(kPvalloc, reinterpret_cast<void*>(r.pvalloc))) r.pvalloc = EmulatedPvalloc;
  }
  const Definition& next_new = found.after[kNew];
  g_allocator_owns_new = home && next_new.address && next_new.object == home;
  g_libstdcxx_new_delete = !g_allocator_owns_new && next_new.address && IsLibstdcxx(next_new.object_name) &&
                           found.after[kDelete].address && IsLibstdcxx(found.after[kDelete].object_name);
  // libc provides all of these; should one be missing anyway, build it on
  // posix_memalign rather than leave a null pointer behind.
  if (!r.posix_memalign) r.posix_memalign = BootPosixMemalign;
  g_real.posix_memalign = r.posix_memalign;
  if (!r.memalign) r.memalign = EmulatedMemalign;
  if (!r.aligned_alloc) r.aligned_alloc = EmulatedMemalign;
  if (!r.valloc) r.valloc = EmulatedValloc;
  if (!r.pvalloc) r.pvalloc = EmulatedPvalloc;
  if (!r.malloc_usable_size) r.malloc_usable_size = BootUsableSize;
  g_real = r;
  g_resolve_state.store(kResolved, std::memory_order_release);
  return true;
}

bool WaitForRealAllocator() {
  for (int i = 0; i < 1000; ++i) {
    if (ResolveRealAllocator()) return true;
    // Another thread is resolving (dlsym is bounded work): let it finish.
    // The system call, not nanosleep(): that is a cancellation point, and
    // malloc is none.
    timespec ts{0, 1000000};
    syscall(SYS_nanosleep, &ts, nullptr);
  }
  return false;
}

bool ResolveLibcFunctions() {
  if (__builtin_expect(g_libc_noted.load(std::memory_order_acquire), 1)) return true;
  // The walk sets them before any dlsym of its own, so a call from inside
  // it never comes here.
  if (!ResolveRealAllocator()) WaitForRealAllocator();
  return g_libc_noted.load(std::memory_order_acquire);
}

bool g_allocator_owns_new = false;
bool g_libstdcxx_new_delete = false;
LibcFunctions g_libc;

}  // namespace heapwatch::preload
