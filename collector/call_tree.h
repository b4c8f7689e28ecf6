// The flame graph's call tree: samples merged by function from the outermost
// frame (root) to the allocation site (leaves), as JSON (docs/api.md).
// Inlined functions are nodes of their own. With a base profile every node
// also carries the base value and the delta, for a differential flame graph.
#ifndef HEAPWATCH_COLLECTOR_CALL_TREE_H_
#define HEAPWATCH_COLLECTOR_CALL_TREE_H_

#include <nlohmann/json.hpp>

#include "collector/profile_data.h"

namespace heapwatch::collector {

struct CallTreeOptions {
  SampleType type = SampleType::kInuseSpace;
  // Nodes whose |value| (and |delta| in a diff) is below this share of the
  // total are left out; their value stays counted in their parent.
  double min_share = 0.0001;
  size_t max_nodes = 200000;
};

nlohmann::json BuildCallTree(const ProfileData& current, const ProfileData* base,
                             const CallTreeOptions& options);

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_CALL_TREE_H_
