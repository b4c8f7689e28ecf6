// Fast "which functions contain this pc" for one module's DWARF.
//
// libdw's dwarf_getscopes answers it by walking the compilation unit's DIE
// tree on every call, and for an inlined pc walks it again to find the
// abstract origin: milliseconds per address in a large C++ unit. Here each
// unit's function DIEs (with their address ranges) are indexed once, on first
// use, and a lookup is a binary search plus a descent through the one
// function's body, following only the scopes that contain the pc.
//
// Not thread-safe; owned by an ElfModule. The DIEs point into the module's
// Dwarf and are valid while it is.
#ifndef HEAPWATCH_SYMBOLIZER_FUNCTION_INDEX_H_
#define HEAPWATCH_SYMBOLIZER_FUNCTION_INDEX_H_

#include <elfutils/libdw.h>
#include <stdint.h>

#include <unordered_map>
#include <vector>

namespace heapwatch::symbolizer {

class FunctionIndex {
 public:
  // The function scopes containing `pc` (a DWARF address: vaddr - bias) in
  // the unit `cudie`: innermost first, DW_TAG_inlined_subroutine DIEs, then
  // the DW_TAG_subprogram last. False if no function of the unit has it.
  bool Find(Dwarf_Die* cudie, uint64_t pc, std::vector<Dwarf_Die>* chain);

  size_t indexed_functions() const { return indexed_functions_; }

 private:
  struct Range {
    uint64_t low;
    uint64_t high;
    Dwarf_Die die;
  };
  const std::vector<Range>& RangesOf(Dwarf_Die* cudie);

  std::unordered_map<const void*, std::vector<Range>> units_;  // by CU DIE address
  size_t indexed_functions_ = 0;
};

}  // namespace heapwatch::symbolizer

#endif  // HEAPWATCH_SYMBOLIZER_FUNCTION_INDEX_H_
