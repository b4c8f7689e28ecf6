#include "collector/alert_sinks.h"

#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cmath>
#include <ctime>

#include "collector/log.h"

namespace heapwatch::collector {
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::asio::ip::tcp;

namespace {

// The alertname each rule has in Alertmanager and in k8s/prometheus rules.
const char* AlertName(const std::string& rule) {
  if (rule == "time_to_oom") return "HeapwatchOOMPredicted";
  if (rule == "memory_usage") return "HeapwatchMemoryNearLimit";
  if (rule == "leak_suspect") return "HeapwatchLeakSuspect";
  return "HeapwatchAlert";
}

std::string Hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

std::optional<HttpTarget> ParseHttpUrl(const std::string& url, std::string* error) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    *error = "only http:// URLs are supported: " + url;
    return std::nullopt;
  }
  std::string rest = url.substr(scheme.size());
  HttpTarget t;
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  t.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.find('@') != std::string::npos) {
    *error = "credentials in URLs are not supported: " + url;
    return std::nullopt;
  }
  size_t colon = authority.rfind(':');
  bool bracketed = !authority.empty() && authority.front() == '[';
  if (colon != std::string::npos && (!bracketed || authority.find(']') < colon)) {
    t.host = authority.substr(0, colon);
    t.port = authority.substr(colon + 1);
  } else {
    t.host = authority;
    t.port = "80";
  }
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']') t.host = t.host.substr(1, t.host.size() - 2);
  char* end = nullptr;
  long port = std::strtol(t.port.c_str(), &end, 10);
  if (t.host.empty() || t.port.empty() || *end != '\0' || port <= 0 || port > 65535) {
    *error = "bad host or port in URL: " + url;
    return std::nullopt;
  }
  for (char c : t.path) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      *error = "bad character in URL path: " + url;
      return std::nullopt;
    }
  }
  return t;
}

std::string Rfc3339(double unix_seconds) {
  if (!std::isfinite(unix_seconds) || unix_seconds < 0) unix_seconds = 0;
  std::time_t secs = static_cast<std::time_t>(unix_seconds);
  int millis = static_cast<int>((unix_seconds - static_cast<double>(secs)) * 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, std::clamp(millis, 0, 999));
  return buf;
}

nlohmann::json AlertmanagerAlert(const Alert& a, double now, double resend_seconds,
                                 const std::string& generator_url) {
  static const std::string host = Hostname();
  nlohmann::json annotations = {{"summary", a.summary}, {"description", a.description}};
  if (!a.function.empty()) annotations["leak_function"] = a.function;
  if (!a.snapshot.empty()) annotations["snapshot"] = a.snapshot;
  // Labels identify the alert (Alertmanager deduplicates on them): they must
  // not change while it fires, so figures go into annotations.
  nlohmann::json out = {{"labels",
                         {{"alertname", AlertName(a.rule)},
                          {"rule", a.rule},
                          {"severity", a.severity},
                          {"pid", std::to_string(a.pid)},
                          {"exe", a.exe},
                          {"instance", host},
                          {"job", "heapwatch"}}},
                        {"annotations", std::move(annotations)},
                        {"startsAt", Rfc3339(a.started_at)},
                        {"generatorURL", generator_url}};
  // Firing: ends four re-send periods ahead unless re-sent (Prometheus does
  // the same), so a collector that dies does not leave it firing forever.
  out["endsAt"] = Rfc3339(a.resolved_at ? *a.resolved_at : now + 4 * resend_seconds);
  return out;
}

nlohmann::json WebhookPayload(const Alert& a) {
  return {{"source", "heapwatch"}, {"status", AlertStateName(a.state)}, {"alert", AlertJson(a)}};
}

// One POST: resolve, connect, write, read, all under one deadline.
struct HttpPoster::Attempt {
  explicit Attempt(boost::asio::io_context& io) : resolver(io), stream(io), deadline(io) {}
  tcp::resolver resolver;
  beast::tcp_stream stream;
  boost::asio::steady_timer deadline;
  http::request<http::string_body> request;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  bool done = false;
};

HttpPoster::HttpPoster(boost::asio::io_context& io, HttpTarget target, double timeout_seconds, size_t max_queue,
                       int max_attempts)
    : io_(io),
      target_(std::move(target)),
      timeout_(timeout_seconds > 0 ? timeout_seconds : 5),
      max_queue_(std::max<size_t>(max_queue, 1)),
      max_attempts_(std::max(max_attempts, 1)),
      backoff_(io) {}

HttpPoster::~HttpPoster() {
  *alive_ = false;
  backoff_.cancel();
}

void HttpPoster::Post(std::string body) {
  if (queue_.size() >= max_queue_) {
    // Keep the newest: the state an alert is in now matters more than history.
    // The front may be in flight; drop the next one instead.
    auto victim = busy_ && queue_.size() > 1 ? queue_.begin() + 1 : queue_.begin();
    if (!(busy_ && queue_.size() == 1)) {
      queue_.erase(victim);
      ++stats_.dropped;
    }
  }
  queue_.push_back({std::move(body), 0});
  StartNext();
}

void HttpPoster::StartNext() {
  if (busy_ || queue_.empty()) return;
  busy_ = true;
  auto op = std::make_shared<Attempt>(io_);
  op->parser.body_limit(64 * 1024);
  op->request = {http::verb::post, target_.path, 11};
  op->request.set(http::field::host, target_.host + ":" + target_.port);
  op->request.set(http::field::user_agent, "heapwatchd");
  op->request.set(http::field::content_type, "application/json");
  op->request.body() = queue_.front().body;
  op->request.prepare_payload();
  std::shared_ptr<bool> alive = alive_;
  auto finish = [this, op, alive](bool ok, const std::string& error) {
    if (!*alive || op->done) return;
    op->done = true;
    op->deadline.cancel();
    beast::error_code ignored;
    op->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    op->stream.close();
    Finish(ok, error);
  };
  op->deadline.expires_after(Seconds(timeout_));
  op->deadline.async_wait([op, finish](const boost::system::error_code& ec) {
    if (ec) return;
    op->resolver.cancel();
    finish(false, "timed out");
  });
  op->resolver.async_resolve(
      target_.host, target_.port, [op, finish](const beast::error_code& ec, tcp::resolver::results_type results) {
        if (ec) return finish(false, "resolve: " + ec.message());
        op->stream.async_connect(results, [op, finish](const beast::error_code& ec, const tcp::endpoint&) {
          if (ec) return finish(false, "connect: " + ec.message());
          http::async_write(op->stream, op->request, [op, finish](const beast::error_code& ec, size_t) {
            if (ec) return finish(false, "write: " + ec.message());
            http::async_read(op->stream, op->buffer, op->parser,
                             [op, finish](const beast::error_code& ec, size_t) {
                               if (ec) return finish(false, "read: " + ec.message());
                               unsigned status = op->parser.get().result_int();
                               finish(status / 100 == 2, "HTTP " + std::to_string(status) + ": " +
                                                             op->parser.get().body().substr(0, 200));
                             });
          });
        });
      });
}

void HttpPoster::Finish(bool ok, const std::string& error) {
  busy_ = false;
  if (queue_.empty()) return;
  if (ok) {
    ++stats_.sent;
    queue_.pop_front();
  } else {
    ++stats_.failures;
    stats_.last_error = error;
    Job& job = queue_.front();
    if (++job.attempts >= max_attempts_) {
      ++stats_.dropped;
      Log(LogLevel::kWarning, "alert delivery gave up",
          {{"host", target_.host}, {"path", target_.path}, {"error", error}, {"attempts", job.attempts}});
      queue_.pop_front();
    } else {
      // Back off 1, 2, 4... seconds before the retry; nothing else is sent
      // meanwhile, so order is kept.
      busy_ = true;
      backoff_.expires_after(Seconds(std::ldexp(1.0, job.attempts - 1)));
      std::shared_ptr<bool> alive = alive_;
      backoff_.async_wait([this, alive](const boost::system::error_code& ec) {
        if (ec || !*alive) return;
        busy_ = false;
        StartNext();
      });
      return;
    }
  }
  // Not from inside the completion handler's stack: post the next start.
  std::shared_ptr<bool> alive = alive_;
  boost::asio::post(io_, [this, alive] {
    if (*alive) StartNext();
  });
}

AlertSinks::AlertSinks(boost::asio::io_context& io, const AlertConfig& config) : config_(config) {
  std::string error;
  if (!config.alertmanager_url.empty()) {
    auto target = ParseHttpUrl(config.alertmanager_url, &error);
    if (!target) {
      Log(LogLevel::kError, "Alertmanager sink disabled", {{"error", error}});
    } else {
      // A base URL gets the v2 path; a full one is kept.
      if (target->path.find("/api/v2/alerts") == std::string::npos) {
        while (!target->path.empty() && target->path.back() == '/') target->path.pop_back();
        target->path += "/api/v2/alerts";
      }
      alertmanager_ = std::make_unique<HttpPoster>(io, *target, config.http_timeout_seconds);
    }
  }
  if (!config.webhook_url.empty()) {
    auto target = ParseHttpUrl(config.webhook_url, &error);
    if (!target) {
      Log(LogLevel::kError, "webhook sink disabled", {{"error", error}});
    } else {
      webhook_ = std::make_unique<HttpPoster>(io, *target, config.http_timeout_seconds);
    }
  }
}

void AlertSinks::Notify(Alert& alert, double now) {
  nlohmann::json fields = AlertJson(alert);
  Log(alert.state == AlertState::kFiring ? LogLevel::kWarning : LogLevel::kInfo,
      alert.state == AlertState::kFiring ? "alert firing" : "alert resolved", fields);
  if (webhook_) webhook_->Post(WebhookPayload(alert).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (alertmanager_) SendToAlertmanager({&alert}, now);
}

void AlertSinks::Resend(const std::vector<Alert*>& firing, double now) {
  if (!alertmanager_) return;
  std::vector<Alert*> due;
  for (Alert* a : firing) {
    if (now - a->last_sent >= config_.resend_seconds) due.push_back(a);
  }
  if (!due.empty()) SendToAlertmanager(due, now);
}

void AlertSinks::SendToAlertmanager(const std::vector<Alert*>& alerts, double now) {
  nlohmann::json body = nlohmann::json::array();
  for (Alert* a : alerts) {
    body.push_back(AlertmanagerAlert(*a, now, config_.resend_seconds, generator_url_));
    a->last_sent = now;
  }
  alertmanager_->Post(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace heapwatch::collector
