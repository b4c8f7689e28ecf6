#include "symbolizer/demangle.h"

#include <cxxabi.h>
#include <stdlib.h>
#include <string.h>

namespace heapwatch::symbolizer {

std::string Demangle(const char* name) {
  if (name == nullptr) return {};
  // Only "_Z..." names are mangled; asking the demangler about "main" or
  // "malloc" could turn them into type names ("i" -> "int").
  if (strncmp(name, "_Z", 2) != 0) return name;
  int status = 0;
  char* demangled = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || demangled == nullptr) {
    free(demangled);
    return name;
  }
  std::string result(demangled);
  free(demangled);
  return result;
}

}  // namespace heapwatch::symbolizer
