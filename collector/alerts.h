// Alert rules and their state machine.
//
// Rules (thresholds in AlertConfig):
//   time_to_oom   predicted time to reaching the memory limit below
//                 --alert-oom-seconds (critical)
//   memory_usage  usage above --alert-usage-ratio of the limit (warning)
//   leak_suspect  the top leak suspect grows at least --alert-leak-bytes-per-sec,
//                 holds --alert-leak-min-share of all growth and scores at least
//                 --alert-leak-min-score (warning)
//
// Each (rule, process instance) is one alert with states
//   pending  the condition holds, for less than --alert-for-seconds
//   firing   it held that long; it stays firing until the condition has been
//            clear for --alert-resolve-seconds (a dip does not resolve it)
//   resolved it was clear that long, or the process exited
// For time_to_oom the `for` period is at most a quarter of the predicted time
// to OOM: a fast leak must not spend its warning time waiting. (False alarms
// from a sawtooth or a filled cache are kept out by the analysis, whose
// trend follows the floor and the recent slope, not by waiting.)
// A pending alert whose condition clears is dropped: it never fired. After a
// resolution, a new episode is a new alert that must wait out `for` again, so
// a condition that comes and goes cannot make an alert flap.
//
// Not thread-safe: the collector's loop thread only. Alerts are owned here;
// pointers returned stay valid until the alert leaves the bounded history.
#ifndef HEAPWATCH_COLLECTOR_ALERTS_H_
#define HEAPWATCH_COLLECTOR_ALERTS_H_

#include <nlohmann/json.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collector/analysis.h"
#include "collector/config.h"

namespace heapwatch::collector {

enum class AlertState { kPending, kFiring, kResolved };
const char* AlertStateName(AlertState state);

// One rule's verdict on one process for one tick.
struct AlertCondition {
  std::string rule;
  bool active = false;
  std::string severity;
  std::string summary;
  std::string description;
  double value = 0;      // the figure compared with the threshold
  double threshold = 0;
  // Caps the `for` period of this condition (time_to_oom: a quarter of the
  // predicted time left, so waiting never eats most of the warning).
  std::optional<double> max_for;
};

// The configured rules applied to a process's latest analysis. Every rule
// gives a condition (active or not), so alerts can resolve.
std::vector<AlertCondition> EvaluateRules(const AlertConfig& config, const ProcessAnalysis& analysis,
                                          const std::string& exe, uint32_t pid);

struct Alert {
  std::string id;           // "<rule>/<pid>"
  std::string rule, severity, summary, description;
  uint32_t pid = 0;
  uint64_t start_time_ns = 0;  // with pid, names the process instance
  std::string exe;
  AlertState state = AlertState::kPending;
  double pending_since = 0;    // the condition first held
  double started_at = 0;       // it fired
  std::optional<double> resolved_at;
  double clear_since = 0;      // the condition stopped holding; 0 while it holds
  double value = 0, threshold = 0;
  std::string function;        // the top leak suspect when it fired
  std::string snapshot;        // evidence written when it fired
  std::string resolution;      // "condition cleared" or "process exited"
  double last_sent = 0;        // last time it went to Alertmanager
};

nlohmann::json AlertJson(const Alert& alert);

class AlertManager {
 public:
  explicit AlertManager(AlertConfig config, size_t max_history = 256);

  // Applies one tick's conditions for a process instance. Returns the alerts
  // that changed to firing or resolved on this tick, in that order.
  std::vector<Alert*> Update(uint32_t pid, uint64_t start_time_ns, const std::string& exe,
                             const std::vector<AlertCondition>& conditions, double now);
  // The process instance exited: its firing alerts resolve now (returned) and
  // pending ones are dropped.
  std::vector<Alert*> ProcessGone(uint32_t pid, uint64_t start_time_ns, double now);

  // Pending and firing alerts, then resolved ones, newest first within each.
  std::vector<const Alert*> List() const;
  std::vector<Alert*> Firing();
  size_t firing_count() const;
  uint64_t fired_total() const { return fired_total_; }

 private:
  Alert* FindActive(const std::string& rule, uint32_t pid, uint64_t start_time_ns);
  void Trim();

  AlertConfig config_;
  size_t max_history_;
  std::deque<std::unique_ptr<Alert>> alerts_;  // oldest first
  uint64_t fired_total_ = 0;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_ALERTS_H_
