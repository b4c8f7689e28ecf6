// Structured logging for heapwatchd: one JSON object per line on stderr, so
// `kubectl logs` output can be parsed by log pipelines. Thread-safe.
#ifndef HEAPWATCH_COLLECTOR_LOG_H_
#define HEAPWATCH_COLLECTOR_LOG_H_

#include <nlohmann/json.hpp>
#include <string_view>

namespace heapwatch::collector {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(std::string_view level);
bool LogEnabled(LogLevel level);
// Writes {"ts": ..., "level": ..., "msg": msg, ...fields}. Fields must be an
// object (or null).
void Log(LogLevel level, std::string_view msg, const nlohmann::json& fields = nullptr);

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_LOG_H_
