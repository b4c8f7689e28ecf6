#include "symbolizer/function_index.h"

#include <dwarf.h>

#include <algorithm>

namespace heapwatch::symbolizer {
namespace {

// Tags whose children may hold function definitions (C++ and others put
// some definitions inside namespaces and classes).
bool IsContainer(int tag) {
  return tag == DW_TAG_namespace || tag == DW_TAG_class_type || tag == DW_TAG_structure_type ||
         tag == DW_TAG_union_type || tag == DW_TAG_module;
}

// Scopes inside a function body that can contain inlined calls.
bool IsBodyScope(int tag) {
  return tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block ||
         tag == DW_TAG_try_block || tag == DW_TAG_catch_block;
}

// Corrupt DWARF can nest arbitrarily; real code does not come close.
constexpr int kMaxDepth = 256;

}  // namespace

const std::vector<FunctionIndex::Range>& FunctionIndex::RangesOf(Dwarf_Die* cudie) {
  auto [it, inserted] = units_.try_emplace(cudie->addr);
  std::vector<Range>& ranges = it->second;
  if (!inserted) return ranges;
  // Iterative walk over the unit's top level and containers (no recursion:
  // the depth of a corrupt file must not become ours).
  std::vector<Dwarf_Die> pending;
  Dwarf_Die child;
  if (dwarf_child(cudie, &child) == 0) pending.push_back(child);
  while (!pending.empty()) {
    Dwarf_Die die = pending.back();
    pending.pop_back();
    do {
      int tag = dwarf_tag(&die);
      if (tag == DW_TAG_subprogram) {
        Dwarf_Addr base = 0, start = 0, end = 0;
        ptrdiff_t offset = 0;
        while ((offset = dwarf_ranges(&die, offset, &base, &start, &end)) > 0) {
          if (end > start) ranges.push_back(Range{start, end, die});
        }
      } else if (IsContainer(tag) && pending.size() < kMaxDepth) {
        Dwarf_Die inner;
        if (dwarf_child(&die, &inner) == 0) pending.push_back(inner);
      }
    } while (dwarf_siblingof(&die, &die) == 0);
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.low < b.low; });
  indexed_functions_ += ranges.size();
  return ranges;
}

bool FunctionIndex::Find(Dwarf_Die* cudie, uint64_t pc, std::vector<Dwarf_Die>* chain) {
  chain->clear();
  const std::vector<Range>& ranges = RangesOf(cudie);
  auto after = std::upper_bound(ranges.begin(), ranges.end(), pc,
                                [](uint64_t value, const Range& r) { return value < r.low; });
  // Function ranges do not overlap in practice; look back a little in case a
  // few do (e.g. zero-sized or duplicated entries in odd producers).
  const Range* found = nullptr;
  for (int back = 0; back < 8 && after != ranges.begin(); ++back) {
    --after;
    if (pc >= after->low && pc < after->high) {
      found = &*after;
      break;
    }
  }
  if (found == nullptr) return false;

  // Descend from the function through the scopes containing pc.
  std::vector<Dwarf_Die> outer_first = {found->die};
  Dwarf_Die scope = found->die;
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    Dwarf_Die child;
    if (dwarf_child(&scope, &child) != 0) break;
    bool descended = false;
    do {
      int tag = dwarf_tag(&child);
      if (IsBodyScope(tag) && dwarf_haspc(&child, pc) > 0) {
        if (tag == DW_TAG_inlined_subroutine) outer_first.push_back(child);
        scope = child;
        descended = true;
        break;
      }
    } while (dwarf_siblingof(&child, &child) == 0);
    if (!descended) break;
  }
  chain->assign(outer_first.rbegin(), outer_first.rend());
  return true;
}

}  // namespace heapwatch::symbolizer
