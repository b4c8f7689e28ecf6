// Where separate debug info for a module may live, in the order tried.
//
// The layouts are those distributions and GDB use:
//   <debug dir>/.build-id/<first byte hex>/<rest hex>.debug       (by build-id)
//   <dir of module>/<debuglink>                                   (.gnu_debuglink)
//   <dir of module>/.debug/<debuglink>
//   <debug dir>/<dir of module>/<debuglink>
// Each debug dir is tried inside the module's root first (debug packages
// installed in the application's image), then as a path of the sidecar's own
// filesystem (debug files mounted into the sidecar). A candidate is only a
// guess: the caller verifies the build-id (or, without one, the debuglink CRC).
#ifndef HEAPWATCH_SYMBOLIZER_DEBUG_FILE_FINDER_H_
#define HEAPWATCH_SYMBOLIZER_DEBUG_FILE_FINDER_H_

#include <string>
#include <vector>

namespace heapwatch::symbolizer {

struct DebugFileCandidate {
  std::string root;  // "" = the sidecar's own filesystem
  std::string path;  // absolute within root
  bool operator==(const DebugFileCandidate&) const = default;
};

struct DebugFileQuery {
  std::string root;         // where the module was found ("" = as is)
  std::string module_path;  // absolute path of the module within root
  std::string build_id;     // raw bytes; may be empty
  std::string debuglink;    // .gnu_debuglink name; may be empty
  std::vector<std::string> debug_dirs;
};

// Candidates without duplicates, most specific first (build-id before names).
std::vector<DebugFileCandidate> DebugFileCandidates(const DebugFileQuery& query);

}  // namespace heapwatch::symbolizer

#endif  // HEAPWATCH_SYMBOLIZER_DEBUG_FILE_FINDER_H_
