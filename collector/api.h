// The HTTP API (docs/api.md): a pure function from a request to a response,
// reading the collector's state. No I/O except reading the UI's files and the
// snapshot store. Bad parameters get a 400 with a message.
#ifndef HEAPWATCH_COLLECTOR_API_H_
#define HEAPWATCH_COLLECTOR_API_H_

#include <nlohmann/json.hpp>
#include <string>

#include "collector/http_server.h"
#include "collector/process.h"

namespace heapwatch::collector {

class Collector;

HttpResponse HandleRequest(const HttpRequest& request, Collector& collector);

// JSON views shared by the API and snapshots.
nlohmann::json ProcessJson(const Process& process, Collector& collector);
nlohmann::json TimelineJson(const Process& process, Collector& collector);

// Constant-time comparison of a presented token with the configured one.
bool TokenMatches(const std::string& presented, const std::string& expected);

// Content-Type for a UI file name.
const char* MimeType(const std::string& path);

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_API_H_
