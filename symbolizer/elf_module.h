// One opened, verified module and its libdwfl session.
//
// Addresses are ELF virtual addresses: the module is reported to libdwfl with
// bias 0, so a vaddr from the symbolizer's callers is used as is, for
// executables (PIE or not) and shared objects alike.
//
// Not thread-safe: the owner serializes all calls (libdwfl caches lazily
// inside the Dwfl handle, on the first lookup that needs DWARF or symbols).
#ifndef HEAPWATCH_SYMBOLIZER_ELF_MODULE_H_
#define HEAPWATCH_SYMBOLIZER_ELF_MODULE_H_

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "symbolizer/elf_file.h"
#include "symbolizer/function_index.h"
#include "symbolizer/symbolizer.h"

typedef struct Dwfl Dwfl;
typedef struct Dwfl_Module Dwfl_Module;

namespace heapwatch::symbolizer {

class ElfModule {
 public:
  // Takes the opened file. `root` and `module_path` are where it was found,
  // for the separate debug info search. Returns null (and *error) if libdwfl
  // rejects it.
  static std::unique_ptr<ElfModule> Create(ElfFile file, std::string root,
                                           std::string module_path,
                                           std::vector<std::string> debug_dirs,
                                           std::string* error);
  ~ElfModule();
  ElfModule(const ElfModule&) = delete;
  ElfModule& operator=(const ElfModule&) = delete;

  // kOk with frames, or kNoSymbol.
  Location Lookup(uint64_t vaddr);

  const std::string& path() const { return path_; }
  const std::string& build_id() const { return build_id_; }
  // The separate debug file in use ("" if none, or not looked for yet).
  const std::string& debug_file() const { return debug_file_; }
  // Number of separate debug files opened so far (0 or 1).
  int debug_files_opened() const { return debug_files_opened_; }

 private:
  ElfModule() = default;
  static int FindDebuginfoCallback(Dwfl_Module* mod, void** userdata, const char* modname,
                                   uint64_t base, const char* file_name,
                                   const char* debuglink_file, uint32_t debuglink_crc,
                                   char** debuginfo_file_name);
  int FindDebugFile(const char* debuglink_file, uint32_t debuglink_crc, char** found_path);
  int FindAltFile(const char* alt_name, char** found_path);
  bool AppendDwarfFrames(uint64_t vaddr, std::vector<SourceFrame>* frames);
  bool AppendSymbolFrame(uint64_t vaddr, std::vector<SourceFrame>* frames);
  // The function symbol containing vaddr, from a sorted copy of the symbol
  // table (libdwfl's own lookup scans every symbol on each call).
  const char* FindSymbol(uint64_t vaddr);
  void LoadSymbols();

  struct Symbol {
    uint64_t address;
    uint64_t size;
    const char* name;  // in libdwfl's string table; valid while dwfl_ is
  };

  Dwfl* dwfl_ = nullptr;
  Dwfl_Module* module_ = nullptr;
  uint64_t low_ = 0;   // [low_, high_): vaddrs the module covers
  uint64_t high_ = 0;
  std::string path_;
  std::string root_;
  std::string module_path_;
  std::string build_id_;
  std::string debuglink_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::vector<std::string> debug_dirs_;
  std::string debug_file_;
  int debug_files_opened_ = 0;
  FunctionIndex functions_;
  bool symbols_loaded_ = false;
  std::vector<Symbol> symbols_;  // by address
};

}  // namespace heapwatch::symbolizer

#endif  // HEAPWATCH_SYMBOLIZER_ELF_MODULE_H_
