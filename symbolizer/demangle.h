// C++ (Itanium ABI) demangling; any other name is returned unchanged.
#ifndef HEAPWATCH_SYMBOLIZER_DEMANGLE_H_
#define HEAPWATCH_SYMBOLIZER_DEMANGLE_H_

#include <string>

namespace heapwatch::symbolizer {

// "_ZN2ns3FooEv" -> "ns::Foo()". Names that are not mangled, or that the
// demangler rejects, come back as they are. Thread-safe.
std::string Demangle(const char* name);

}  // namespace heapwatch::symbolizer

#endif  // HEAPWATCH_SYMBOLIZER_DEMANGLE_H_
