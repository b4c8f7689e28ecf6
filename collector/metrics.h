// Prometheus text exposition (format 0.0.4) of the collector's state:
// per-process heap, RSS, cgroup usage and limit, live samples and drops, and
// the collector's own health (ingest errors, evictions, RSS, CPU).
#ifndef HEAPWATCH_COLLECTOR_METRICS_H_
#define HEAPWATCH_COLLECTOR_METRICS_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace heapwatch::collector {

class Collector;

std::string RenderMetrics(Collector& collector);

// Builds one exposition: each family once, with HELP and TYPE, then its
// samples. Label values are escaped as the format requires.
class MetricsWriter {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  // Declares a family; samples added later under the same name join it.
  void Family(const std::string& name, const char* type, const std::string& help);
  void Sample(const std::string& name, const Labels& labels, double value);
  std::string Finish() const;
  static std::string EscapeLabel(std::string_view value);

 private:
  struct FamilyData {
    std::string type, help;
    std::string samples;
  };
  std::vector<std::string> order_;
  std::map<std::string, FamilyData> families_;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_METRICS_H_
