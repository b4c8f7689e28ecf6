#include "collector/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

namespace heapwatch::collector {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
constexpr const char* kNames[] = {"debug", "info", "warning", "error"};
}  // namespace

void SetLogLevel(std::string_view level) {
  for (int i = 0; i < 4; ++i) {
    if (level == kNames[i]) g_level.store(i);
  }
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void Log(LogLevel level, std::string_view msg, const nlohmann::json& fields) {
  if (!LogEnabled(level)) return;
  nlohmann::json line = nlohmann::json::object();
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  line["ts"] = now;
  line["level"] = kNames[static_cast<int>(level)];
  line["msg"] = msg;
  if (fields.is_object()) {
    for (const auto& [k, v] : fields.items()) line[k] = v;
  }
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
}

}  // namespace heapwatch::collector
