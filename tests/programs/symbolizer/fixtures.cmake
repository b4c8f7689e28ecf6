# Symbolizer fixtures: real binaries in each variant the symbolizer's unit
# tests need (with and without -g, -O2 inlining, stripped, separate debug
# info, non-PIE, a dlopen'ed library, a rebuilt variant with another
# build-id). Included by symbolizer/CMakeLists.txt, which sets no targets of
# its own here beyond heapwatch_symbolizer_fixtures; HWSYM_FIXTURE_DIR names
# the output folder.
set(HWSYM_FIXTURE_DIR ${CMAKE_CURRENT_BINARY_DIR}/fixtures)
set(_hwsym_src ${CMAKE_CURRENT_LIST_DIR})
find_program(HWSYM_OBJCOPY NAMES objcopy REQUIRED)
find_program(HWSYM_STRIP NAMES strip REQUIRED)
add_custom_command(
  OUTPUT ${HWSYM_FIXTURE_DIR}/fixtures.stamp
  COMMAND sh ${_hwsym_src}/build_fixtures.sh ${HWSYM_FIXTURE_DIR} ${_hwsym_src}
          ${CMAKE_CXX_COMPILER} ${HWSYM_OBJCOPY} ${HWSYM_STRIP}
  DEPENDS ${_hwsym_src}/build_fixtures.sh ${_hwsym_src}/fixture.cc ${_hwsym_src}/plugin.cc
  COMMENT "Building symbolizer fixture programs"
  VERBATIM)
add_custom_target(heapwatch_symbolizer_fixtures DEPENDS ${HWSYM_FIXTURE_DIR}/fixtures.stamp)
