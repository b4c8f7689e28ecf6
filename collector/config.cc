#include "collector/config.h"

#include "collector/alert_sinks.h"

#include <boost/program_options.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace heapwatch::collector {
namespace po = boost::program_options;

namespace {

std::string DefaultUiDir() {
#ifdef HEAPWATCH_DEFAULT_UI_DIR
  return HEAPWATCH_DEFAULT_UI_DIR;
#else
  return "/usr/share/heapwatch/ui";
#endif
}

// Maps "--memory-limit" to "HEAPWATCH_MEMORY_LIMIT" and back for the
// environment parser: every long option has exactly one variable.
std::string EnvName(const std::string& option) {
  std::string env = "HEAPWATCH_";
  for (char c : option) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return env;
}

std::string ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read --token-file " + path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) throw std::runtime_error("--token-file " + path + " is empty");
  return token;
}

void ParseHostPort(const std::string& text, Config& config) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("--http wants HOST:PORT, got " + text);
  std::string host = text.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  long port = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535 || colon + 1 == text.size()) {
    throw std::runtime_error("--http: bad port in " + text);
  }
  config.http_host = host.empty() ? "127.0.0.1" : host;
  config.http_port = static_cast<uint16_t>(port);
}

void ParseUids(const std::string& text, Config& config) {
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == "any") {
      config.allow_any_uid = true;
      continue;
    }
    char* end = nullptr;
    unsigned long uid = std::strtoul(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0') throw std::runtime_error("--allow-uids: bad uid '" + item + "'");
    config.allow_uids.push_back(static_cast<uint32_t>(uid));
  }
}

}  // namespace

std::optional<uint64_t> ParseByteSize(const std::string& text) {
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || value < 0 || !std::isfinite(value)) return std::nullopt;
  std::string suffix(end);
  static const std::pair<const char*, double> kSuffixes[] = {
      {"", 1},       {"k", 1e3},           {"K", 1e3},           {"M", 1e6},
      {"G", 1e9},    {"T", 1e12},          {"Ki", 1024.0},       {"Mi", 1048576.0},
      {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}};
  for (const auto& [name, factor] : kSuffixes) {
    if (suffix == name) {
      double bytes = value * factor;
      if (bytes >= 1.8e19) return std::nullopt;
      return static_cast<uint64_t>(bytes);
    }
  }
  return std::nullopt;
}

std::optional<Config> ParseConfig(int argc, const char* const* argv) {
  Config config;
  std::string http, memory_limit, socket_mode, allow_uids;
  po::options_description desc(
      "heapwatchd: the heapwatch sidecar. Every flag can also be set by the\n"
      "environment variable HEAPWATCH_<FLAG> (e.g. --data-dir: HEAPWATCH_DATA_DIR).\n\n"
      "Options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("version", "print the version and exit")
    ("socket", po::value(&config.socket_path)->default_value(config.socket_path),
     "Unix socket the shims connect to")
    ("socket-mode", po::value(&socket_mode)->default_value("0660"),
     "permissions of the socket (octal)")
    ("allow-uids", po::value(&allow_uids),
     "comma-separated peer uids allowed besides our own and root; 'any' allows all")
    ("http", po::value(&http)->default_value("127.0.0.1:7070"),
     "HOST:PORT for the UI, API and metrics (loopback unless told otherwise)")
    ("data-dir", po::value(&config.data_dir)->default_value(config.data_dir),
     "directory for snapshots (evidence)")
    ("ui-dir", po::value(&config.ui_dir), "directory of the web UI's files")
    ("token-file", po::value(&config.token_file),
     "file holding a bearer token required by every endpoint but /healthz and /readyz")
    ("memory-limit", po::value(&memory_limit),
     "the application container's memory limit (bytes or 128Mi); overrides the cgroup's")
    ("poll-interval", po::value(&config.poll_interval)->default_value(config.poll_interval),
     "seconds between RSS and cgroup samples")
    ("alert-oom-seconds", po::value(&config.alerts.oom_seconds)->default_value(config.alerts.oom_seconds),
     "alert when the predicted time to OOM drops below this")
    ("alert-usage-ratio", po::value(&config.alerts.usage_ratio)->default_value(config.alerts.usage_ratio),
     "alert when memory usage exceeds this share of the limit")
    ("alert-leak-bytes-per-sec", po::value(&config.alerts.leak_min_bytes_per_sec)->default_value(config.alerts.leak_min_bytes_per_sec),
     "alert on a leak suspect growing at least this fast")
    ("alert-leak-min-share", po::value(&config.alerts.leak_min_share)->default_value(config.alerts.leak_min_share),
     "... and holding at least this share of all growth")
    ("alert-leak-min-score", po::value(&config.alerts.leak_min_score)->default_value(config.alerts.leak_min_score),
     "... and growing this steadily (0-1: monotonic and not flattening)")
    ("alert-for-seconds", po::value(&config.alerts.for_seconds)->default_value(config.alerts.for_seconds),
     "how long a condition must hold before its alert fires")
    ("alert-resolve-seconds", po::value(&config.alerts.resolve_seconds)->default_value(config.alerts.resolve_seconds),
     "how long a condition must be clear before its alert resolves")
    ("alertmanager-url", po::value(&config.alerts.alertmanager_url),
     "Alertmanager base URL (v2 API), e.g. http://127.0.0.1:9093")
    ("webhook-url", po::value(&config.alerts.webhook_url), "URL receiving alerts as JSON POSTs")
    ("alert-resend-seconds", po::value(&config.alerts.resend_seconds)->default_value(config.alerts.resend_seconds),
     "how often firing alerts are re-sent to Alertmanager")
    ("analysis-window", po::value(&config.analysis.window_seconds)->default_value(config.analysis.window_seconds),
     "seconds of history the growth trends look at (shorter windows of 1/4 and 4x the minimum span too)")
    ("analysis-min-span", po::value(&config.analysis.min_span_seconds)->default_value(config.analysis.min_span_seconds),
     "seconds of history a trend needs before it predicts or names a suspect")
    ("max-processes", po::value(&config.limits.max_processes)->default_value(config.limits.max_processes),
     "processes kept (exited ones are evicted first)")
    ("max-stacks", po::value(&config.limits.max_stacks_per_process)->default_value(config.limits.max_stacks_per_process),
     "unique stacks kept per process")
    ("max-total-stacks", po::value(&config.limits.max_total_stacks)->default_value(config.limits.max_total_stacks),
     "unique stacks kept over all processes")
    ("max-live-samples", po::value(&config.limits.max_live_samples_per_process)->default_value(config.limits.max_live_samples_per_process),
     "live samples kept per process")
    ("max-total-live-samples", po::value(&config.limits.max_total_live_samples)->default_value(config.limits.max_total_live_samples),
     "live samples kept over all processes")
    ("max-history-points", po::value(&config.limits.max_history_points)->default_value(config.limits.max_history_points),
     "timeline points kept per process (older ones are thinned)")
    ("max-snapshots", po::value(&config.limits.max_snapshots)->default_value(config.limits.max_snapshots),
     "snapshots kept on disk (oldest deleted first)")
    ("hello-timeout", po::value(&config.hello_timeout)->default_value(config.hello_timeout),
     "seconds a new shim connection has to send its hello before it is closed")
    ("proc-root", po::value(&config.proc_root)->default_value(config.proc_root), "where procfs is mounted")
    ("log-level", po::value(&config.log_level)->default_value(config.log_level), "debug, info, warning or error");
  // clang-format on

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::store(po::parse_environment(desc,
                                    [&desc](const std::string& env) -> std::string {
                                      for (const auto& opt : desc.options()) {
                                        const std::string& name = opt->long_name();
                                        if (name == "help" || name == "version") continue;
                                        if (EnvName(name) == env) return name;
                                      }
                                      return "";
                                    }),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw std::runtime_error(e.what());
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return std::nullopt;
  }
  if (vm.count("version")) {
    std::cout << "heapwatchd " << HEAPWATCH_VERSION << "\n";
    return std::nullopt;
  }

  ParseHostPort(http, config);
  char* end = nullptr;
  config.socket_mode = static_cast<unsigned>(std::strtoul(socket_mode.c_str(), &end, 8));
  if (*end != '\0' || config.socket_mode > 0777) {
    throw std::runtime_error("--socket-mode: not an octal mode: " + socket_mode);
  }
  if (!allow_uids.empty()) ParseUids(allow_uids, config);
  if (!memory_limit.empty()) {
    config.memory_limit = ParseByteSize(memory_limit);
    if (!config.memory_limit || *config.memory_limit == 0) {
      throw std::runtime_error("--memory-limit: not a size: " + memory_limit);
    }
  }
  if (!config.token_file.empty()) config.token = ReadTokenFile(config.token_file);
  if (config.ui_dir.empty()) config.ui_dir = DefaultUiDir();
  if (!(config.poll_interval >= 0.05 && config.poll_interval <= 3600)) {
    throw std::runtime_error("--poll-interval must be between 0.05 and 3600 seconds");
  }
  if (!(config.hello_timeout >= 0.1 && config.hello_timeout <= 3600)) {
    throw std::runtime_error("--hello-timeout must be between 0.1 and 3600 seconds");
  }
  if (config.limits.max_processes == 0 || config.limits.max_stacks_per_process == 0 ||
      config.limits.max_live_samples_per_process == 0 ||
      config.limits.max_total_live_samples == 0 || config.limits.max_history_points < 16) {
    throw std::runtime_error("--max-* limits must be positive (history at least 16)");
  }
  for (const std::string* url : {&config.alerts.alertmanager_url, &config.alerts.webhook_url}) {
    std::string error;
    if (!url->empty() && !ParseHttpUrl(*url, &error)) throw std::runtime_error("alert sink: " + error);
  }
  if (!(config.analysis.min_span_seconds > 0 && config.analysis.window_seconds >= config.analysis.min_span_seconds &&
        config.analysis.window_seconds <= 86400)) {
    throw std::runtime_error("--analysis-window must be at least --analysis-min-span (> 0) and at most a day");
  }
  if (!(config.alerts.for_seconds >= 0 && config.alerts.resolve_seconds >= 0 && config.alerts.resend_seconds > 0 &&
        config.alerts.usage_ratio > 0 && config.alerts.oom_seconds >= 0)) {
    throw std::runtime_error("--alert-*: durations must be >= 0, the ratio and resend period > 0");
  }
  static const char* kLevels[] = {"debug", "info", "warning", "error"};
  bool level_ok = false;
  for (const char* level : kLevels) level_ok |= config.log_level == level;
  if (!level_ok) throw std::runtime_error("--log-level: one of debug, info, warning, error");
  return config;
}

}  // namespace heapwatch::collector
