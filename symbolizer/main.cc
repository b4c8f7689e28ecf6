// heapwatch-symbolize: symbolize addresses in one module by hand, the way the
// collector does (same library, same build-id check, same debug-file search).
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "symbolizer/elf_file.h"
#include "symbolizer/symbolizer.h"

namespace {

constexpr char kUsage[] =
    "usage: heapwatch-symbolize [options] FILE ADDR...\n"
    "\n"
    "Prints function, file:line and the chain of inlined frames for each ADDR\n"
    "(an ELF virtual address, hex with 0x or decimal) in FILE.\n"
    "\n"
    "  --root DIR        open FILE inside DIR (e.g. /proc/PID/root); repeatable,\n"
    "                    tried in order; default: FILE as is\n"
    "  --build-id HEX    only use a file with this build-id\n"
    "  --bias HEX        subtract a load bias first (ADDR is then a runtime address)\n"
    "  --return-address  ADDRs are return addresses: look up ADDR - 1\n"
    "  --debug-dir DIR   search DIR for separate debug info (repeatable;\n"
    "                    default /usr/lib/debug)\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0 if every address was symbolized, 1 if some were not, 2 on\n"
    "bad usage.\n";

bool ParseAddress(const char* text, uint64_t* value) {
  char* end = nullptr;
  errno = 0;
  unsigned long long parsed = strtoull(text, &end, 0);
  if (errno != 0 || end == text || *end != '\0') return false;
  *value = parsed;
  return true;
}

int UsageError(const char* message) {
  fprintf(stderr, "heapwatch-symbolize: %s\n\n%s", message, kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  namespace sym = heapwatch::symbolizer;
  std::vector<std::string> roots;
  std::vector<std::string> debug_dirs;
  sym::ModuleRef module;
  uint64_t bias = 0;
  bool return_addresses = false;
  std::vector<uint64_t> addresses;

  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "-h" || arg == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--root") {
      const char* v = value();
      if (v == nullptr) return UsageError("--root needs a directory");
      roots.push_back(v);
    } else if (arg == "--debug-dir") {
      const char* v = value();
      if (v == nullptr) return UsageError("--debug-dir needs a directory");
      debug_dirs.push_back(v);
    } else if (arg == "--build-id") {
      const char* v = value();
      if (v == nullptr || !sym::HexDecode(v, &module.build_id) || module.build_id.empty()) {
        return UsageError("--build-id needs a hex string");
      }
    } else if (arg == "--bias") {
      const char* v = value();
      if (v == nullptr || !ParseAddress(v, &bias)) return UsageError("--bias needs a number");
    } else if (arg == "--return-address") {
      return_addresses = true;
    } else if (arg == "--") {
      ++i;
      break;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return UsageError(("unknown option " + arg).c_str());
    } else {
      break;
    }
  }
  if (i >= argc) return UsageError("no FILE given");
  module.path = argv[i++];
  if (roots.empty()) {
    // Without a root, accept a relative FILE; debug files are searched
    // relative to its directory, which needs an absolute path.
    roots.push_back("");
    if (char* absolute = realpath(module.path.c_str(), nullptr); absolute != nullptr) {
      module.path = absolute;
      free(absolute);
    }
  }
  if (i >= argc) return UsageError("no ADDR given");
  for (; i < argc; ++i) {
    uint64_t address = 0;
    if (!ParseAddress(argv[i], &address)) {
      return UsageError((std::string("bad address ") + argv[i]).c_str());
    }
    address -= bias;
    if (return_addresses) address -= 1;
    addresses.push_back(address);
  }

  sym::Options options;
  if (!debug_dirs.empty()) options.debug_dirs = debug_dirs;
  sym::Symbolizer symbolizer(options);
  std::vector<sym::Location> locations = symbolizer.SymbolizeMany(module, roots, addresses);
  // After the lookups: separate debug info is found lazily, by the first one.
  printf("# %s\n", symbolizer.DescribeModule(module, roots).c_str());
  bool all_ok = true;
  for (size_t n = 0; n < addresses.size(); ++n) {
    const sym::Location& location = locations[n];
    printf("0x%" PRIx64 ": %s\n", addresses[n], sym::StatusName(location.status));
    all_ok = all_ok && location.status == sym::Status::kOk;
    for (size_t f = 0; f < location.frames.size(); ++f) {
      const sym::SourceFrame& frame = location.frames[f];
      printf("  #%zu %s", f, frame.function.empty() ? "??" : frame.function.c_str());
      if (!frame.file.empty()) {
        printf(" at %s:%d", frame.file.c_str(), frame.line);
        if (frame.column > 0) printf(":%d", frame.column);
      }
      printf("%s\n", frame.inlined ? " (inlined)" : "");
    }
  }
  return all_ok ? 0 : 1;
}
