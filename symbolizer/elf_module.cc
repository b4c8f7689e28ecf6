#include "symbolizer/elf_module.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <utility>

#include "symbolizer/debug_file_finder.h"
#include "symbolizer/demangle.h"

namespace heapwatch::symbolizer {
namespace {

// Not used (modules are reported with a file descriptor) but libdwfl wants one.
int NoFindElf(Dwfl_Module*, void**, const char*, Dwarf_Addr, char**, Elf**) { return -1; }

// The name of a subprogram or inlined subroutine DIE: the demangled linkage
// name if there is one (qualified, with parameters, as in symbol tables), else
// the plain name. dwarf_attr_integrate follows DW_AT_abstract_origin and
// DW_AT_specification, where inlined and out-of-class definitions keep them.
std::string DieFunctionName(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  for (int name_attr : {DW_AT_linkage_name, DW_AT_MIPS_linkage_name}) {
    if (dwarf_attr_integrate(die, name_attr, &attr) != nullptr) {
      if (const char* linkage = dwarf_formstring(&attr); linkage != nullptr) {
        return Demangle(linkage);
      }
    }
  }
  if (dwarf_attr_integrate(die, DW_AT_name, &attr) != nullptr) {
    if (const char* name = dwarf_formstring(&attr); name != nullptr) return name;
  }
  return {};
}

int DieIntAttr(Dwarf_Die* die, int name) {
  Dwarf_Attribute attr;
  Dwarf_Word value = 0;
  if (dwarf_attr(die, name, &attr) == nullptr || dwarf_formudata(&attr, &value) != 0) return 0;
  return static_cast<int>(value);
}

// The file an inlined subroutine was called from (DW_AT_call_file indexes the
// line table's file list of the DIE's compilation unit).
std::string CallFile(Dwarf_Die* inlined) {
  Dwarf_Attribute attr;
  Dwarf_Word index = 0;
  if (dwarf_attr(inlined, DW_AT_call_file, &attr) == nullptr ||
      dwarf_formudata(&attr, &index) != 0) {
    return {};
  }
  Dwarf_Die cu;
  if (dwarf_diecu(inlined, &cu, nullptr, nullptr) == nullptr) return {};
  Dwarf_Files* files = nullptr;
  size_t count = 0;
  if (dwarf_getsrcfiles(&cu, &files, &count) != 0 || index >= count) return {};
  const char* name = dwarf_filesrc(files, index, nullptr, nullptr);
  return name != nullptr ? name : std::string();
}

}  // namespace

std::unique_ptr<ElfModule> ElfModule::Create(ElfFile file, std::string root,
                                             std::string module_path,
                                             std::vector<std::string> debug_dirs,
                                             std::string* error) {
  static const Dwfl_Callbacks kCallbacks = {
      .find_elf = NoFindElf,
      .find_debuginfo = FindDebuginfoCallback,
      .section_address = dwfl_offline_section_address,
      .debuginfo_path = nullptr,
  };
  std::unique_ptr<ElfModule> module(new ElfModule());
  module->dwfl_ = dwfl_begin(&kCallbacks);
  if (module->dwfl_ == nullptr) {
    *error = std::string("dwfl_begin: ") + dwfl_errmsg(-1);
    return nullptr;
  }
  module->path_ = file.path;
  module->root_ = std::move(root);
  module->module_path_ = std::move(module_path);
  module->build_id_ = file.build_id;
  module->debuglink_ = file.debuglink;
  module->dev_ = file.dev;
  module->ino_ = file.ino;
  module->debug_dirs_ = std::move(debug_dirs);

  dwfl_report_begin(module->dwfl_);
  // Base 0 relative to p_vaddr: module addresses are the file's own vaddrs.
  int fd = file.fd.get();
  module->module_ = dwfl_report_elf(module->dwfl_, module->path_.c_str(), module->path_.c_str(),
                                    fd, 0, /*add_p_vaddr=*/true);
  if (module->module_ == nullptr) {
    *error = std::string("dwfl_report_elf: ") + dwfl_errmsg(-1);
    return nullptr;  // the fd is still ours; ElfFile closes it
  }
  file.fd.Release();  // consumed by libdwfl on success
  if (dwfl_report_end(module->dwfl_, nullptr, nullptr) != 0) {
    *error = std::string("dwfl_report_end: ") + dwfl_errmsg(-1);
    return nullptr;
  }
  void** userdata = nullptr;
  Dwarf_Addr low = 0, high = 0;
  dwfl_module_info(module->module_, &userdata, &low, &high, nullptr, nullptr, nullptr, nullptr);
  *userdata = module.get();
  module->low_ = low;
  module->high_ = high;
  return module;
}

ElfModule::~ElfModule() {
  if (dwfl_ != nullptr) dwfl_end(dwfl_);
}

int ElfModule::FindDebuginfoCallback(Dwfl_Module*, void** userdata, const char*, uint64_t,
                                     const char*, const char* debuglink_file,
                                     uint32_t debuglink_crc, char** debuginfo_file_name) {
  auto* self = static_cast<ElfModule*>(*userdata);
  if (self == nullptr) return -1;
  return self->FindDebugFile(debuglink_file, debuglink_crc, debuginfo_file_name);
}

int ElfModule::FindDebugFile(const char* debuglink_file, uint32_t debuglink_crc,
                             char** found_path) {
  // libdwfl asks only when the module lacks DWARF (or .symtab) of its own. A
  // path-like name is a request for a dwz ".gnu_debugaltlink" file instead;
  // declined here, libdw then looks for it by itself (in the sidecar's own
  // /usr/lib/debug, not inside the root).
  std::string link = debuglink_file != nullptr ? debuglink_file : debuglink_;
  if (link.find('/') != std::string::npos) return -1;
  DebugFileQuery query{root_, module_path_, build_id_, link, debug_dirs_};
  for (const DebugFileCandidate& candidate : DebugFileCandidates(query)) {
    ElfFile debug;
    std::string error;
    if (OpenElfFile(candidate.root, candidate.path, &debug, &error) != ElfOpenResult::kOk) {
      continue;
    }
    if (debug.dev == dev_ && debug.ino == ino_) continue;  // the module itself
    if (!debug.has_debug_info) continue;
    if (!build_id_.empty()) {
      if (debug.build_id != build_id_) continue;
    } else {
      // No build-id: the debuglink CRC is the only proof the file belongs.
      uint32_t crc = 0;
      if (!FileCrc32(debug.fd.get(), &crc) || crc != debuglink_crc) continue;
    }
    debug_file_ = debug.path;
    ++debug_files_opened_;
    *found_path = strdup(debug.path.c_str());
    return debug.fd.Release();  // libdwfl owns it now
  }
  return -1;
}

Location ElfModule::Lookup(uint64_t vaddr) {
  Location location;
  location.status = Status::kNoSymbol;
  if (vaddr < low_ || vaddr >= high_) return location;
  if (!AppendDwarfFrames(vaddr, &location.frames)) {
    location.frames.clear();
    AppendSymbolFrame(vaddr, &location.frames);
  }
  if (!location.frames.empty()) location.status = Status::kOk;
  return location;
}

// The inline chain from DWARF: FunctionIndex gives the DIEs containing the
// address, innermost first. Each DW_TAG_inlined_subroutine is one frame, and
// its DW_AT_call_file/line/column is where the next outer frame called it;
// the innermost frame's own position comes from the line table. The chain
// ends at the DW_TAG_subprogram that is really executing.
bool ElfModule::AppendDwarfFrames(uint64_t vaddr, std::vector<SourceFrame>* frames) {
  Dwarf_Addr bias = 0;
  Dwarf_Die* cudie = dwfl_module_addrdie(module_, vaddr, &bias);
  if (cudie == nullptr) return false;
  std::vector<Dwarf_Die> chain;
  if (!functions_.Find(cudie, vaddr - bias, &chain)) return false;
  SourceFrame position;
  if (Dwfl_Line* line = dwfl_module_getsrc(module_, vaddr); line != nullptr) {
    const char* file = dwfl_lineinfo(line, nullptr, &position.line, &position.column, nullptr,
                                     nullptr);
    if (file != nullptr) position.file = file;
  }
  for (Dwarf_Die& scope : chain) {
    SourceFrame frame = position;
    frame.function = DieFunctionName(&scope);
    frame.inlined = dwarf_tag(&scope) == DW_TAG_inlined_subroutine;
    if (frame.inlined) {
      position.file = CallFile(&scope);
      position.line = DieIntAttr(&scope, DW_AT_call_line);
      position.column = DieIntAttr(&scope, DW_AT_call_column);
    }
    frames->push_back(std::move(frame));
  }
  // The outer function is the one symbol tables also know, by its mangled,
  // fully qualified name; DWARF may only have the bare name of a member
  // defined in its class ("RememberSession" for SessionStore::RememberSession).
  // Prefer the symbol's qualified name, and borrow it when DWARF has none.
  if (const char* name = FindSymbol(vaddr); name != nullptr) {
    std::string symbol = Demangle(name);
    std::string& outer = frames->back().function;
    if (outer.empty() || (symbol.find(outer) != std::string::npos && symbol.size() > outer.size())) {
      outer = std::move(symbol);
    }
  }
  return true;
}

// Without DWARF for the address: the ELF symbol containing it (.symtab, which
// libdwfl also takes from a separate debug file, else .dynsym), plus whatever
// the line table says, if there is one.
bool ElfModule::AppendSymbolFrame(uint64_t vaddr, std::vector<SourceFrame>* frames) {
  const char* name = FindSymbol(vaddr);
  if (name == nullptr) return false;
  SourceFrame frame;
  frame.function = Demangle(name);
  if (Dwfl_Line* line = dwfl_module_getsrc(module_, vaddr); line != nullptr) {
    const char* file =
        dwfl_lineinfo(line, nullptr, &frame.line, &frame.column, nullptr, nullptr);
    if (file != nullptr) frame.file = file;
  }
  frames->push_back(std::move(frame));
  return true;
}

void ElfModule::LoadSymbols() {
  symbols_loaded_ = true;
  int count = dwfl_module_getsymtab(module_);
  for (int i = 1; i < count; ++i) {
    GElf_Sym sym;
    GElf_Addr address = 0;
    GElf_Word shndx = 0;
    const char* name =
        dwfl_module_getsym_info(module_, i, &sym, &address, &shndx, nullptr, nullptr);
    if (name == nullptr || name[0] == '\0' || shndx == SHN_UNDEF) continue;
    int type = GELF_ST_TYPE(sym.st_info);
    if (type != STT_FUNC && type != STT_GNU_IFUNC) continue;
    symbols_.push_back(Symbol{address, sym.st_size, name});
  }
  // By address; among aliases at one address, the sized one first, then the
  // shorter name (often the public one: "malloc" before "__libc_malloc").
  std::sort(symbols_.begin(), symbols_.end(), [](const Symbol& a, const Symbol& b) {
    if (a.address != b.address) return a.address < b.address;
    if ((a.size != 0) != (b.size != 0)) return a.size != 0;
    return strlen(a.name) < strlen(b.name);
  });
  symbols_.shrink_to_fit();
}

const char* ElfModule::FindSymbol(uint64_t vaddr) {
  if (!symbols_loaded_) LoadSymbols();
  auto after = std::upper_bound(symbols_.begin(), symbols_.end(), vaddr,
                                [](uint64_t value, const Symbol& s) { return value < s.address; });
  if (after == symbols_.begin()) return nullptr;
  // The first entry at the greatest address <= vaddr.
  auto candidate = std::prev(after);
  while (candidate != symbols_.begin() && std::prev(candidate)->address == candidate->address) {
    --candidate;
  }
  if (candidate->size != 0) return vaddr < candidate->address + candidate->size ? candidate->name
                                                                                 : nullptr;
  // A sizeless symbol (hand-written assembly) covers up to the next symbol.
  return candidate->name;
}

}  // namespace heapwatch::symbolizer
