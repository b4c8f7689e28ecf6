// heapwatch symbolizer: turns an address inside a loaded ELF module into
// function, file:line and the chain of inlined frames, out of process.
//
// The shim sends, for every loaded object, its path, load bias and build-id
// (wire::Module), and raw return addresses. The caller turns a return address
// into an ELF virtual address (pc - 1 - load_bias) and asks here. Because the
// lookup is in ELF vaddr space, PIE executables, non-PIE executables, shared
// libraries and dlopen'ed libraries are all handled alike.
//
// Files are opened through caller-given roots (normally /proc/<pid>/root, the
// application's filesystem as seen from the sidecar) and are trusted only if
// their GNU build-id equals the one the process reported: a binary replaced on
// disk after the process started yields kBuildIdMismatch, never wrong names.
// Debug info is taken from the module itself, or from a separate debug file
// (.gnu_debuglink, <debug dir>/.build-id/xx/yyyy.debug), again verified by
// build-id. Without DWARF, names come from .symtab, then .dynsym.
//
// Thread safety: every public member function may be called concurrently.
// Lookups in different modules proceed in parallel; lookups in one module are
// serialized (libdw handles are not thread-safe). Opening a large module and
// reading its DWARF can take a while on first use: call from a worker thread,
// and use Peek() where blocking is not allowed.
//
// Memory is bounded: modules, address results and remembered failures live in
// LRU caches with the limits in Options; evictions are counted in Stats.
#ifndef HEAPWATCH_SYMBOLIZER_SYMBOLIZER_H_
#define HEAPWATCH_SYMBOLIZER_SYMBOLIZER_H_

#include <stddef.h>
#include <stdint.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace heapwatch::symbolizer {

struct SourceFrame {
  std::string function;  // demangled; empty if unknown
  std::string file;      // empty if unknown
  int line = 0;
  int column = 0;
  bool inlined = false;  // true for frames inlined into the next one

  bool operator==(const SourceFrame&) const = default;
};

enum class Status {
  kOk,                // at least a function name was found
  kNoSymbol,          // module found and verified, nothing known at this address
  kNoFile,            // no candidate file could be opened (missing, permissions)
  kBuildIdMismatch,   // a file exists but its build-id differs from the module's
  kBadElf,            // files exist but none is a usable ELF object
};

// "ok", "no_symbol", "no_file", "build_id_mismatch", "bad_elf".
const char* StatusName(Status status);

struct Location {
  Status status = Status::kNoSymbol;
  // Innermost (most deeply inlined) first; the last is the real (outer)
  // function. Empty unless status is kOk.
  std::vector<SourceFrame> frames;

  bool operator==(const Location&) const = default;
};

struct ModuleRef {
  std::string path;      // as the process sees it (e.g. /usr/bin/app)
  std::string build_id;  // raw bytes (may be empty when the module has none)
};

struct Options {
  size_t max_cached_modules = 256;      // open modules (each holds fds and maps)
  size_t max_cached_addresses = 1 << 20;
  // Also bounds the address cache by the approximate heap bytes its results
  // take (names are long; 1M results could otherwise take ~300 MiB).
  size_t max_cached_address_bytes = 64 << 20;
  // Directories searched for separate debug info, inside the module's root and
  // then in the sidecar's own filesystem.
  std::vector<std::string> debug_dirs = {"/usr/lib/debug"};
  // A module that could not be opened or verified is not retried for this
  // long: a flood of addresses in a missing module must not reopen it for each.
  // The failure stays known to Peek (bounded by max_cached_modules) until a
  // retry succeeds.
  std::chrono::milliseconds retry_failed_after = std::chrono::seconds(30);
};

class Symbolizer {
 public:
  explicit Symbolizer(Options options = {});
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // `roots` are filesystem prefixes tried in order to open the module, e.g.
  // {"/proc/1234/root", ""} ("" = the path as is). A file is used only if its
  // build-id equals module.build_id (when that is non-empty); otherwise
  // kBuildIdMismatch and no frames. `vaddr` is the ELF virtual address to look
  // up (runtime pc - load_bias; the caller already subtracted 1 from return
  // addresses). Results are cached per (build_id or path, vaddr); a module
  // without build-id is identified by the paths tried, and a file replaced
  // under it is not noticed (nothing could tell).
  Location Symbolize(const ModuleRef& module, const std::vector<std::string>& roots,
                     uint64_t vaddr);

  // Many addresses in one module, same semantics, cheaper: the module is
  // resolved and locked once. Results are in the order of `vaddrs`.
  std::vector<Location> SymbolizeMany(const ModuleRef& module,
                                      const std::vector<std::string>& roots,
                                      const std::vector<uint64_t>& vaddrs);

  // The cached result for this address, if any; or, when the module could not
  // be used the last time it was tried (kBuildIdMismatch, kNoFile, kBadElf),
  // that status with no frames. Never opens a file and never waits for a
  // lookup in progress (only for the cache's lock, which is held for map
  // operations alone); for code that must not block on I/O.
  std::optional<Location> Peek(const ModuleRef& module, const std::vector<std::string>& roots,
                               uint64_t vaddr) const;

  // Debug description of where a module's names come from (file used, debug
  // file, or the reason it failed); opens the module if needed. For the CLI.
  std::string DescribeModule(const ModuleRef& module, const std::vector<std::string>& roots);

  struct Stats {
    uint64_t lookups;          // addresses asked for
    uint64_t cache_hits;       // answered from the address cache
    uint64_t files_opened;     // modules opened and verified
    uint64_t open_failures;    // module opens that failed (no file, bad ELF)
    uint64_t mismatches;       // module opens refused for a build-id mismatch
    uint64_t bad_elf;          // candidate files that were not usable ELF
    uint64_t debug_files_opened;  // separate debug files found and verified
    uint64_t address_evictions;
    uint64_t module_evictions;
    uint64_t cached_addresses;   // now
    uint64_t cached_address_bytes;  // now, approximate
    uint64_t cached_modules;     // now
  };
  Stats GetStats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace heapwatch::symbolizer

#endif  // HEAPWATCH_SYMBOLIZER_SYMBOLIZER_H_
