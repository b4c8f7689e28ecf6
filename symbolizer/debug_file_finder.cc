#include "symbolizer/debug_file_finder.h"

#include <algorithm>

#include "symbolizer/elf_file.h"

namespace heapwatch::symbolizer {
namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace

std::vector<DebugFileCandidate> DebugFileCandidates(const DebugFileQuery& query) {
  std::vector<DebugFileCandidate> out;
  auto add = [&out](const std::string& root, const std::string& path) {
    DebugFileCandidate candidate{root, path};
    if (std::find(out.begin(), out.end(), candidate) == out.end()) out.push_back(candidate);
  };
  // Roots to try debug dirs in: the module's, then the sidecar's own.
  std::vector<std::string> dir_roots = {query.root};
  if (!query.root.empty()) dir_roots.push_back("");

  if (query.build_id.size() >= 2) {
    std::string hex = HexEncode(query.build_id);
    std::string tail = ".build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug";
    for (const std::string& root : dir_roots) {
      for (const std::string& dir : query.debug_dirs) add(root, Join(dir, tail));
    }
  }
  if (!query.debuglink.empty() && query.debuglink.find('/') == std::string::npos &&
      query.debuglink != "." && query.debuglink != ".." && !query.module_path.empty() &&
      query.module_path[0] == '/') {
    std::string module_dir = DirName(query.module_path);
    add(query.root, Join(module_dir, query.debuglink));
    add(query.root, Join(Join(module_dir, ".debug"), query.debuglink));
    for (const std::string& root : dir_roots) {
      for (const std::string& dir : query.debug_dirs) {
        std::string trimmed = dir;
        while (!trimmed.empty() && trimmed.back() == '/') trimmed.pop_back();
        add(root, Join(trimmed + module_dir, query.debuglink));
      }
    }
  }
  return out;
}

}  // namespace heapwatch::symbolizer
