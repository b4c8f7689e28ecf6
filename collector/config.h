// heapwatchd's configuration: command-line flags, each with a HEAPWATCH_*
// environment variable for Kubernetes. Flags win over the environment.
#ifndef HEAPWATCH_COLLECTOR_CONFIG_H_
#define HEAPWATCH_COLLECTOR_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace heapwatch::collector {

struct Limits {
  size_t max_processes = 256;          // exited ones are evicted first
  size_t max_stacks_per_process = 100000;
  size_t max_total_stacks = 400000;
  size_t max_live_samples_per_process = 1000000;
  size_t max_total_live_samples = 4000000;  // ~50 bytes each in the collector
  size_t max_history_points = 4096;    // per process; older points are thinned
  size_t max_snapshots = 200;          // on disk; oldest deleted first
  size_t max_connections = 512;
};

// Growth analysis (collector/analysis.h).
struct AnalysisConfig {
  double window_seconds = 240;     // longest sliding window of the trends
  double min_span_seconds = 5;     // history a trend needs before it counts
  double min_tau = 0.2;            // usage must rise this consistently to predict an OOM
  // A trend is trusted to predict at most this many times its own length
  // ahead (a cache filling for 20 s says little about the next 10 minutes).
  double max_extrapolation = 8;
  double leak_established_seconds = 60;  // growth this long is a leak whatever the headroom
  size_t max_tracked_stacks = 64;  // per process: stacks with a live-bytes history
  size_t max_series_points = 600;  // per tracked stack
};

struct AlertConfig {
  double oom_seconds = 900;       // fire when predicted time to OOM is below this
  double usage_ratio = 0.90;      // fire when usage / limit is above this
  double leak_min_bytes_per_sec = 64 * 1024;  // leak suspect strong enough to alert
  double leak_min_share = 0.5;
  double leak_min_score = 0.6;    // monotonic-growth score of the top suspect
  double for_seconds = 10;        // a condition must hold this long to fire
  double resolve_seconds = 30;    // ... and be clear this long to resolve
  std::string alertmanager_url;   // e.g. http://127.0.0.1:9093
  std::string webhook_url;
  double resend_seconds = 60;     // firing alerts are re-sent to Alertmanager this often
  double http_timeout_seconds = 5;
};

struct Config {
  std::string socket_path = "/run/heapwatch/heapwatch.sock";
  unsigned socket_mode = 0660;
  std::string http_host = "127.0.0.1";
  uint16_t http_port = 7070;
  std::string data_dir = "/var/lib/heapwatch";
  std::string ui_dir;                  // empty: the installed UI
  std::string token;                   // read from --token-file; empty: no auth
  std::string token_file;
  std::optional<uint64_t> memory_limit;  // overrides the cgroup's limit
  bool allow_any_uid = false;
  std::vector<uint32_t> allow_uids;    // besides our own uid and root
  double poll_interval = 1.0;          // seconds between RSS/cgroup samples
  double hello_timeout = 10.0;         // seconds a new connection has to say hello
  std::string proc_root = "/proc";     // for tests of the /proc readers
  std::string log_level = "info";
  Limits limits;
  AlertConfig alerts;
  AnalysisConfig analysis;
};

// Parses argv and the environment. Returns nullopt after printing --help or
// --version (exit 0); throws std::runtime_error with a clear message on bad
// configuration (exit 2): exceptions are only for start-up.
std::optional<Config> ParseConfig(int argc, const char* const* argv);

// "1Gi", "512Mi", "134217728", "100M": Kubernetes quantities and plain bytes.
std::optional<uint64_t> ParseByteSize(const std::string& text);

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_CONFIG_H_
