// heapwatchd: the heapwatch sidecar. Parses the configuration and runs the
// Collector until SIGTERM; everything else lives in the library.
#include <cstdio>
#include <exception>

#include "collector/collector.h"
#include "collector/config.h"
#include "collector/log.h"

int main(int argc, char** argv) {
  using namespace heapwatch::collector;
  std::optional<Config> config;
  try {
    config = ParseConfig(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "heapwatchd: %s (see --help)\n", e.what());
    return 2;
  }
  if (!config) return 0;  // --help or --version
  SetLogLevel(config->log_level);
  Collector collector(std::move(*config));
  if (std::string err = collector.Start(); !err.empty()) {
    Log(LogLevel::kError, "cannot start", {{"error", err}});
    return 1;
  }
  collector.Run();
  Log(LogLevel::kInfo, "stopped");
  return 0;
}
