// heapwatchd's parts wired together around one io_context: the ingest socket,
// the HTTP server, the poller that samples RSS and cgroup figures, the
// symbolization worker, and the snapshot store. main.cc only parses the
// configuration and runs this; tests and benchmarks can embed it.
//
// Threading: everything here runs on the thread that calls Run(), except the
// SymbolService's worker, which touches nothing but its own cache.
#ifndef HEAPWATCH_COLLECTOR_COLLECTOR_H_
#define HEAPWATCH_COLLECTOR_COLLECTOR_H_

#include <boost/asio.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "collector/alert_sinks.h"
#include "collector/alerts.h"
#include "collector/analysis.h"
#include "collector/config.h"
#include "collector/http_server.h"
#include "collector/ingest_server.h"
#include "collector/proc_reader.h"
#include "collector/profile_cache.h"
#include "collector/process_table.h"
#include "collector/snapshot_store.h"
#include "collector/symbol_service.h"

namespace heapwatch::collector {

class Collector {
 public:
  explicit Collector(Config config);
  ~Collector();

  // Binds the socket and the HTTP port and starts the timers. Returns an
  // error message when heapwatchd cannot serve (fatal at start-up).
  std::string Start();
  // Runs the loop until Stop() or SIGTERM/SIGINT.
  void Run();
  void Stop();

  // Takes a snapshot of `process` now (pprof, profile with names, timeline,
  // leak suspects, alerts; `alert` is the one that caused it, if any).
  std::optional<std::string> TakeSnapshot(const Process& process, const std::string& reason,
                                          std::string* error, const Alert* alert = nullptr);
  // Empty when ready, else why not (/readyz).
  std::string NotReadyReason() const;
  // Samples RSS and cgroup figures of every running process now, refreshes
  // the growth analysis and evaluates the alert rules.
  void PollOnce();

  const Config& config() const { return config_; }
  ProcessTable& processes() { return table_; }
  const IngestServer& ingest() const { return ingest_; }
  SymbolService& symbols() { return symbols_; }
  // `process`'s profile with names, as of now (ProfileCache: the reference
  // is valid until the next call).
  const ProfileData& Profile(const Process& process, double now) {
    return profiles_.Get(process, &symbols_, now);
  }
  std::string Pprof(const Process& process, SampleType default_type, double now) {
    return profiles_.Pprof(process, &symbols_, now, default_type);
  }
  const ProfileCache& profile_cache() const { return profiles_; }
  SnapshotStore& snapshots() { return snapshots_; }
  const ProcReader& proc() const { return proc_; }
  const Analyzer& analyzer() const { return analyzer_; }
  const AlertManager& alerts() const { return alerts_; }
  const AlertSinks& alert_sinks() const { return sinks_; }
  uint16_t http_port() const { return http_.port(); }
  uint64_t http_bad_requests() const { return http_.bad_requests(); }
  std::map<unsigned, uint64_t>& http_responses() { return http_responses_; }
  double started_at() const { return started_at_; }
  // The memory limit that applies to a process: --memory-limit, else its
  // cgroup's (nullopt: unknown or unlimited).
  std::optional<uint64_t> LimitFor(const Process& process) const;
  std::optional<uint64_t> CgroupUsage(const Process& process) const;

 private:
  struct Latest {
    std::optional<uint64_t> rss, cgroup_usage, cgroup_limit;
  };
  void SchedulePoll();
  void EvaluateAlerts(Process& process, const ProcessAnalysis& analysis, double now);
  void OnAlertFired(Process& process, Alert& alert, double now);

  Config config_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer poll_timer_;
  ProcessTable table_;
  ProcReader proc_;
  SymbolService symbols_;
  ProfileCache profiles_;
  SnapshotStore snapshots_;
  IngestServer ingest_;
  HttpServer http_;
  Analyzer analyzer_;
  AlertManager alerts_;
  AlertSinks sinks_;
  std::map<unsigned, uint64_t> http_responses_;
  std::map<const Process*, Latest> latest_;
  std::string snapshot_init_error_;
  double started_at_ = 0;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_COLLECTOR_H_
