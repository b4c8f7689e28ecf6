// Where alerts go: a structured log line (always), Alertmanager's v2 API and a
// generic JSON webhook (when configured).
//
// Delivery never blocks the loop: an HttpPoster per URL sends one POST at a
// time on the collector's io_context (Beast), with a deadline on each attempt,
// a bounded queue (the oldest message is dropped, and counted, when full) and
// a bounded number of retries with exponential back-off. Only plain http://
// URLs are supported (the sink is expected in-cluster or on loopback).
//
// Alertmanager forgets an alert whose endsAt passes, so firing alerts are
// re-sent every --alert-resend-seconds with endsAt four periods ahead, as
// Prometheus does; a resolved alert is sent once with endsAt set to when it
// resolved.
//
// Loop thread only.
#ifndef HEAPWATCH_COLLECTOR_ALERT_SINKS_H_
#define HEAPWATCH_COLLECTOR_ALERT_SINKS_H_

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collector/alerts.h"
#include "collector/config.h"

namespace heapwatch::collector {

struct HttpTarget {
  std::string host;
  std::string port;  // "80" by default
  std::string path;  // "/" by default
};
// Accepts http://host[:port][/path]; nullopt with *error otherwise.
std::optional<HttpTarget> ParseHttpUrl(const std::string& url, std::string* error);

// Timestamps as Alertmanager wants them: RFC 3339 in UTC, milliseconds.
std::string Rfc3339(double unix_seconds);
// One entry of POST /api/v2/alerts (a postableAlert).
nlohmann::json AlertmanagerAlert(const Alert& alert, double now, double resend_seconds,
                                 const std::string& generator_url);
// The body of a webhook POST: {"source", "status", "alert"}.
nlohmann::json WebhookPayload(const Alert& alert);

class HttpPoster {
 public:
  struct Stats {
    uint64_t sent = 0;       // answered 2xx
    uint64_t failures = 0;   // attempts that failed (retried while attempts remain)
    uint64_t dropped = 0;    // given up after the last attempt, or pushed out of a full queue
    std::string last_error;
  };

  HttpPoster(boost::asio::io_context& io, HttpTarget target, double timeout_seconds, size_t max_queue = 64,
             int max_attempts = 4);
  ~HttpPoster();
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  // Queues a JSON body for POSTing; returns at once.
  void Post(std::string body);
  const Stats& stats() const { return stats_; }
  size_t queued() const { return queue_.size(); }

 private:
  struct Job {
    std::string body;
    int attempts = 0;
  };
  struct Attempt;
  void StartNext();
  void Finish(bool ok, const std::string& error);

  boost::asio::io_context& io_;
  HttpTarget target_;
  double timeout_;
  size_t max_queue_;
  int max_attempts_;
  std::deque<Job> queue_;
  bool busy_ = false;
  boost::asio::steady_timer backoff_;
  Stats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class AlertSinks {
 public:
  // A URL that cannot be used disables its sink with an error logged
  // (ParseConfig has already refused it).
  AlertSinks(boost::asio::io_context& io, const AlertConfig& config);
  // The back-link Alertmanager shows (our /api/v1/alerts).
  void SetGeneratorUrl(std::string url) { generator_url_ = std::move(url); }

  // A transition (fired or resolved): logged, then sent. Call only after the
  // evidence is on disk.
  void Notify(Alert& alert, double now);
  // Re-sends firing alerts whose last send is older than resend_seconds.
  void Resend(const std::vector<Alert*>& firing, double now);

  const HttpPoster* alertmanager() const { return alertmanager_.get(); }
  const HttpPoster* webhook() const { return webhook_.get(); }

 private:
  void SendToAlertmanager(const std::vector<Alert*>& alerts, double now);

  AlertConfig config_;
  std::string generator_url_;
  std::unique_ptr<HttpPoster> alertmanager_;
  std::unique_ptr<HttpPoster> webhook_;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_ALERT_SINKS_H_
