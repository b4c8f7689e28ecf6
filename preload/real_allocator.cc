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
#include "raw_memory.h"

extern "C" {
// glibc's own entry points: a fallback should RTLD_NEXT find nothing.
void* __libc_malloc(size_t) __attribute__((weak));
void __libc_free(void*) __attribute__((weak));
void* __libc_calloc(size_t, size_t) __attribute__((weak));
void* __libc_realloc(void*, size_t) __attribute__((weak));
void* __libc_memalign(size_t, size_t) __attribute__((weak));
}

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
  return ResolveRealAllocator() ? g_real.valloc(n) : ArenaAlloc(n, 4096);
}
void* BootPvalloc(size_t n) {
  return ResolveRealAllocator() ? g_real.pvalloc(n) : ArenaAlloc((n + 4095) & ~size_t{4095}, 4096);
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
void* EmulatedValloc(size_t n) { return EmulatedMemalign(static_cast<size_t>(getpagesize()), n); }
void* EmulatedPvalloc(size_t n) {
  size_t page = static_cast<size_t>(getpagesize());
  size_t rounded = n == 0 ? page : (n + page - 1) & ~(page - 1);
  if (rounded < n) {
    errno = ENOMEM;
    return nullptr;
  }
  return EmulatedMemalign(page, rounded);
}

// Which loaded object holds `addr`: its program headers' address, unique per
// object, or nullptr. Compares addresses with the PT_LOAD segments only;
// dladdr would also search the object's symbol table for the nearest symbol,
// ~75k instructions a call in libc, over half of a short process's start-up
// with the shim (callgrind, /bin/true).
const void* ObjectOf(const void* addr, const char** name = nullptr) {
  struct Query {
    uintptr_t addr;
    const void* object;
    const char* name;
  } q{reinterpret_cast<uintptr_t>(addr), nullptr, nullptr};
  if (name) *name = nullptr;
  if (!addr) return nullptr;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto* q = static_cast<Query*>(arg);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type == PT_LOAD && q->addr - (info->dlpi_addr + ph.p_vaddr) < ph.p_memsz) {
            q->object = info->dlpi_phdr;
            q->name = info->dlpi_name;
            return 1;
          }
        }
        return 0;
      },
      &q);
  if (name) *name = q.name;
  return q.object;
}

// The symbol `name` that the object `info` describes defines (its own, not
// an import; its default version, not a hidden one), looked up in its GNU
// hash table, or nullptr. An object without one (no linker has omitted it
// for years; the vDSO, which defines no malloc) counts as not defining it.
const ElfW(Sym)* DefinedSymbol(const dl_phdr_info* info, const char* name) {
  const ElfW(Dyn)* dynamic = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
      dynamic = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    }
  }
  if (!dynamic) return nullptr;
  uintptr_t gnu_hash = 0, symtab = 0, strtab = 0, versym = 0;
  for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
    // ld.so relocates these in place on x86-64, but not in the vDSO.
    uintptr_t at = d->d_un.d_ptr < info->dlpi_addr ? d->d_un.d_ptr + info->dlpi_addr : d->d_un.d_ptr;
    if (d->d_tag == DT_GNU_HASH) gnu_hash = at;
    if (d->d_tag == DT_SYMTAB) symtab = at;
    if (d->d_tag == DT_STRTAB) strtab = at;
    if (d->d_tag == DT_VERSYM) versym = at;
  }
  if (!gnu_hash || !symtab || !strtab) return nullptr;
  const auto* header = reinterpret_cast<const uint32_t*>(gnu_hash);
  uint32_t nbuckets = header[0], symoffset = header[1], bloom_words = header[2];
  if (nbuckets == 0) return nullptr;
  const auto* buckets = reinterpret_cast<const uint32_t*>(
      gnu_hash + 16 + size_t{bloom_words} * sizeof(ElfW(Addr)));
  const uint32_t* chain = buckets + nbuckets;
  uint32_t hash = 5381;
  for (const char* c = name; *c; ++c) hash = hash * 33 + static_cast<unsigned char>(*c);
  const auto* symbols = reinterpret_cast<const ElfW(Sym)*>(symtab);
  const auto* versions = reinterpret_cast<const ElfW(Half)*>(versym);
  for (uint32_t i = buckets[hash % nbuckets]; i >= symoffset; ++i) {
    uint32_t h = chain[i - symoffset];
    if ((h | 1) == (hash | 1) && strcmp(reinterpret_cast<const char*>(strtab) + symbols[i].st_name, name) == 0 &&
        !(versions && (versions[i] & 0x8000))) {  // 0x8000: a hidden (non-default) version
      return symbols[i].st_shndx != SHN_UNDEF ? &symbols[i] : nullptr;
    }
    if (h & 1) break;  // the end of the bucket's chain
  }
  return nullptr;
}

// The shim's own object (its program headers' address, as ObjectOf gives).
// Not a function-local static: its guard would come from libstdc++, which
// the shim must not need. Threads that race here store the same value.
const void* g_shim_object = nullptr;
const void* ShimObject() {
  if (!g_shim_object) g_shim_object = ObjectOf(reinterpret_cast<const void*>(&ResolveRealAllocator));
  return g_shim_object;
}

// Where `name` is first defined, in load order (the order of symbol lookup
// for the objects loaded at start), among the objects before the shim, or
// those after it: its symbol, and its object's load address in *base.
// nullptr if none there defines it.
const ElfW(Sym)* FirstDefinition(const char* name, bool after_shim, uintptr_t* base) {
  struct Walk {
    const void* shim;
    const char* name;
    bool after_shim;
    bool past_shim = false;
    const ElfW(Sym)* found = nullptr;
    uintptr_t base = 0;
  } walk{ShimObject(), name, after_shim};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto* w = static_cast<Walk*>(arg);
        if (!w->past_shim) {
          w->past_shim = info->dlpi_phdr == w->shim;
          if (w->past_shim && !w->after_shim) return 1;  // none before the shim
          if (w->past_shim || w->after_shim) return 0;
        }
        w->found = DefinedSymbol(info, w->name);
        w->base = info->dlpi_addr;
        return w->found ? 1 : 0;
      },
      &walk);
  *base = walk.base;
  return walk.found;
}

// The first definition of `name` among the objects before the shim or
// after it (FirstDefinition), or nullptr.
void* Definition(const char* name, bool after_shim) {
  uintptr_t base;
  const ElfW(Sym)* sym = FirstDefinition(name, after_shim, &base);
  if (!sym) return nullptr;
  // An indirect function (no allocator's entry point is one that we know):
  // the loader runs its resolver. This definition is the one dlsym finds.
  if (ELF64_ST_TYPE(sym->st_info) == STT_GNU_IFUNC) return DlSym(after_shim ? RTLD_NEXT : RTLD_DEFAULT, name);
  return reinterpret_cast<void*>(base + sym->st_value);
}

// The definition of `name` that the program's calls reach when it comes
// before the shim's (in the executable, or an allocator preloaded first), or
// nullptr.
void* DefinitionBeforeShim(const char* name) { return Definition(name, /*after_shim=*/false); }

// What dlsym(RTLD_NEXT, name) finds, or nullptr, from the objects' hash
// tables. A dlsym that finds nothing makes its error message with malloc: in
// a C program (no operator new anywhere) the lookup of operator new put two
// blocks in the bootstrap arena, whose pins and write were 3 page faults of
// every exec.
void* DefinitionAfterShim(const char* name) { return Definition(name, /*after_shim=*/true); }

// True if `f` lies in libstdc++ (its file name starts "libstdc++.so").
bool InLibstdcxx(void* f) {
  const char* name = nullptr;
  if (!ObjectOf(f, &name) || !name) return false;
  const char* base = strrchr(name, '/');
  return strncmp(base ? base + 1 : name, "libstdc++.so", 12) == 0;
}

// Set at resolution: an object before the shim defines malloc.
bool g_other_allocator_first = false;

// What the program's call of `name` reaches without the shim: the definition
// after the shim's (RTLD_NEXT), unless an object before it has one. Where
// another allocator comes first (AllocatorPrecedes) the program's calls go
// to it, not to the shim, except for the names it lacks (reallocarray and
// the sized frees, which jemalloc 5.3 and gperftools 2.10 do not define):
// those come to the shim, whose realloc and free must then be that
// allocator's. glibc's would be handed blocks it does not own.
template <typename Fn>
Fn Lookup(const char* name, Fn fallback) {
  void* f = g_other_allocator_first ? DefinitionBeforeShim(name) : nullptr;
  if (!f) f = DlSym(RTLD_NEXT, name);
  return f ? reinterpret_cast<Fn>(f) : fallback;
}

}  // namespace

bool AllocatorPrecedes() { return g_other_allocator_first; }

const char* PrecedingAllocatorObject() {
  if (!g_other_allocator_first) return nullptr;
  const char* name = nullptr;
  ObjectOf(DefinitionBeforeShim("malloc"), &name);
  return name ? name : "";
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
      sched_yield();
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
  g_other_allocator_first = DefinitionBeforeShim("malloc") != nullptr;
  RealAllocator r;
  r.malloc = Lookup("malloc", __libc_malloc);
  r.free = Lookup("free", __libc_free);
  r.calloc = Lookup("calloc", __libc_calloc);
  r.realloc = Lookup("realloc", __libc_realloc);
  r.posix_memalign = Lookup<int (*)(void**, size_t, size_t)>("posix_memalign", nullptr);
  r.aligned_alloc = Lookup<void* (*)(size_t, size_t)>("aligned_alloc", nullptr);
  r.memalign = Lookup("memalign", __libc_memalign);
  r.valloc = Lookup<void* (*)(size_t)>("valloc", nullptr);
  r.pvalloc = Lookup<void* (*)(size_t)>("pvalloc", nullptr);
  r.malloc_usable_size = Lookup<size_t (*)(void*)>("malloc_usable_size", nullptr);

  const void* home = ObjectOf(reinterpret_cast<void*>(r.malloc));
  auto same_object = [&](void* f) { return home && ObjectOf(f) == home; };
  if (r.posix_memalign && same_object(reinterpret_cast<void*>(r.posix_memalign))) {
    g_real.posix_memalign = r.posix_memalign;  // the emulations below use it
    if (!same_object(reinterpret_cast<void*>(r.memalign))) r.memalign = EmulatedMemalign;
    if (!same_object(reinterpret_cast<void*>(r.aligned_alloc))) r.aligned_alloc = EmulatedMemalign;
    if (!same_object(reinterpret_cast<void*>(r.valloc))) r.valloc = EmulatedValloc;
    if (!same_object(reinterpret_cast<void*>(r.pvalloc))) r.pvalloc = EmulatedPvalloc;
  }
  void* next_new = DefinitionAfterShim("_Znwm");
  g_allocator_owns_new = same_object(next_new);
  g_libstdcxx_new_delete = !g_allocator_owns_new && InLibstdcxx(next_new) &&
                           InLibstdcxx(DlSym(RTLD_NEXT, "_ZdlPv"));
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

bool g_allocator_owns_new = false;
bool g_libstdcxx_new_delete = false;

}  // namespace heapwatch::preload
