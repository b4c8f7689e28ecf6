# Browser tests of the web UI (tests/e2e/test_ui.py driving tests/ui/ui_test.mjs).
# Slow and opt-in: they skip, and CTest reports them skipped, unless
# HEAPWATCH_UI_TESTS=1 is in the environment, e.g.
#   HEAPWATCH_UI_TESTS=1 ctest --test-dir build -L ui --output-on-failure
# Screenshots and measured figures land in ${CMAKE_BINARY_DIR}/artifacts/ui/.
heapwatch_e2e_test(NAME ui TIMEOUT 900 LABELS ui slow RUN_SERIAL)
set_tests_properties(e2e_ui PROPERTIES SKIP_REGULAR_EXPRESSION "OK \\(skipped=")

# The UI's pure modules (the flame graph's layout, finding and colours; the
# formatters): node's test runner, no browser, fast; part of the ordinary
# suite when node is installed.
find_program(HEAPWATCH_NODE node)
if(HEAPWATCH_NODE)
  add_test(NAME ui_unit COMMAND ${HEAPWATCH_NODE} --test ${CMAKE_SOURCE_DIR}/tests/ui/unit_test.mjs)
  set_tests_properties(ui_unit PROPERTIES LABELS "ui;unit" TIMEOUT 120)
else()
  message(STATUS "node not found: ui_unit test skipped")
endif()
