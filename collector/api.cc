#include "collector/api.h"

#include <boost/url.hpp>
#include <cmath>
#include <filesystem>
#include <map>

#include "collector/analysis.h"
#include "collector/call_tree.h"
#include "collector/collector.h"
#include "collector/log.h"
#include "collector/metrics.h"
#include "collector/pprof.h"
#include "collector/profile_data.h"

namespace heapwatch::collector {
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

struct Query {
  std::string path;
  std::map<std::string, std::string> params;
  std::string Param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }
  bool Has(const std::string& name) const { return params.count(name) != 0; }
};

class BadRequest : public std::exception {
 public:
  BadRequest(http::status status, std::string message) : status_(status), message_(std::move(message)) {}
  http::status status() const { return status_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  http::status status_;
  std::string message_;
};

HttpResponse Text(const HttpRequest& req, http::status status, std::string body,
                  const char* type = "text/plain; charset=utf-8") {
  HttpResponse res{status, req.version()};
  res.set(http::field::server, "heapwatchd");
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.body() = std::move(body);
  return res;
}

HttpResponse Json(const HttpRequest& req, const json& body, http::status status = http::status::ok) {
  return Text(req, status, body.dump(-1, ' ', false, json::error_handler_t::replace),
              "application/json");
}

HttpResponse Error(const HttpRequest& req, http::status status, const std::string& message) {
  return Json(req, {{"error", message}}, status);
}

Process& RequireProcess(const Query& q, Collector& c) {
  std::string text = q.Param("pid");
  if (text.empty()) throw BadRequest(http::status::bad_request, "missing parameter: pid");
  char* end = nullptr;
  unsigned long pid = std::strtoul(text.c_str(), &end, 10);
  if (*end != '\0' || pid == 0 || pid > UINT32_MAX) {
    throw BadRequest(http::status::bad_request, "pid must be a positive integer, got '" + text + "'");
  }
  Process* p = c.processes().Find(static_cast<uint32_t>(pid));
  if (!p) throw BadRequest(http::status::not_found, "no such process: " + text);
  return *p;
}

SampleType RequireType(const Query& q) {
  if (!q.Has("type")) return SampleType::kInuseSpace;
  auto type = ParseSampleType(q.Param("type"));
  if (!type) {
    throw BadRequest(http::status::bad_request,
                     "type must be one of inuse_space, inuse_objects, alloc_space, alloc_objects");
  }
  return *type;
}

double NumberParam(const Query& q, const std::string& name, double fallback, double lo, double hi) {
  if (!q.Has(name)) return fallback;
  std::string text = q.Param(name);
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= lo && v <= hi)) {
    throw BadRequest(http::status::bad_request, name + " must be a number in [" + std::to_string(lo) +
                                                    ", " + std::to_string(hi) + "]");
  }
  return v;
}

json OptionalNumber(const std::optional<uint64_t>& v) { return v ? json(*v) : json(nullptr); }

ProfileData LoadSnapshotProfile(Collector& c, const std::string& id) {
  std::string error;
  auto doc = c.snapshots().Load(id, &error);
  if (!doc) throw BadRequest(http::status::not_found, error);
  auto data = ProfileDataFromJson(doc->value("profile", json::object()), &error);
  if (!data) throw BadRequest(http::status::internal_server_error, "snapshot " + id + ": " + error);
  return std::move(*data);
}

HttpResponse Processes(const HttpRequest& req, Collector& c) {
  json list = json::array();
  for (const auto& p : c.processes().processes()) list.push_back(ProcessJson(*p, c));
  return Json(req, {{"processes", std::move(list)}});
}

HttpResponse Profile(const HttpRequest& req, const Query& q, Collector& c) {
  CallTreeOptions options;
  options.type = RequireType(q);
  options.min_share = NumberParam(q, "min_share", options.min_share, 0, 1);
  options.max_nodes = static_cast<size_t>(NumberParam(q, "max_nodes", 200000, 1, 1e6));
  Process& p = RequireProcess(q, c);
  const ProfileData& data = c.Profile(p, NowSeconds());
  std::optional<ProfileData> base;
  if (q.Has("base")) base = LoadSnapshotProfile(c, q.Param("base"));
  json out = BuildCallTree(data, base ? &*base : nullptr, options);
  out["pid"] = p.pid();
  out["unresolved_locations"] = data.unresolved_locations;
  if (base) out["base"] = q.Param("base");
  return Json(req, out);
}

HttpResponse Pprof(const HttpRequest& req, const Query& q, Collector& c) {
  SampleType type = RequireType(q);
  Process& p = RequireProcess(q, c);
  HttpResponse res = Text(req, http::status::ok, c.Pprof(p, type, NowSeconds()), "application/octet-stream");
  res.set(http::field::content_disposition,
          "attachment; filename=\"heap-" + std::to_string(p.pid()) + ".pb.gz\"");
  return res;
}

HttpResponse Timeline(const HttpRequest& req, const Query& q, Collector& c) {
  return Json(req, TimelineJson(RequireProcess(q, c), c));
}

HttpResponse Leaks(const HttpRequest& req, const Query& q, Collector& c) {
  double max = NumberParam(q, "max", 20, 1, 1000);
  Process& p = RequireProcess(q, c);
  double now = NowSeconds();
  const ProfileData& data = c.Profile(p, now);
  return Json(req, LeaksJson(p, c.analyzer().Find(p), data, now, static_cast<size_t>(max)));
}

HttpResponse Alerts(const HttpRequest& req, Collector& c) {
  json list = json::array();
  for (const Alert* a : c.alerts().List()) list.push_back(AlertJson(*a));
  return Json(req, {{"alerts", std::move(list)}});
}

HttpResponse Snapshots(const HttpRequest& req, const Query& q, Collector& c) {
  if (req.method() == http::verb::post) {
    Process& p = RequireProcess(q, c);
    std::string reason = q.Has("reason") ? q.Param("reason") : "manual";
    if (reason.size() > 200) throw BadRequest(http::status::bad_request, "reason too long");
    std::string error;
    auto id = c.TakeSnapshot(p, reason, &error);
    if (!id) return Error(req, http::status::insufficient_storage, error);
    return Json(req, {{"id", *id}}, http::status::created);
  }
  json list = json::array();
  for (const auto& m : c.snapshots().List()) {
    list.push_back({{"id", m.id}, {"pid", m.pid}, {"time", m.time}, {"reason", m.reason},
                    {"size_bytes", m.size_bytes}});
  }
  return Json(req, {{"snapshots", std::move(list)}});
}

HttpResponse Snapshot(const HttpRequest& req, const std::string& rest, Collector& c) {
  std::string id = rest;
  bool pprof = false;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    id = rest.substr(0, slash);
    if (rest.substr(slash) != "/pprof") throw BadRequest(http::status::not_found, "no such path");
    pprof = true;
  }
  if (!SnapshotStore::ValidId(id)) throw BadRequest(http::status::bad_request, "invalid snapshot id");
  if (pprof) {
    auto bytes = c.snapshots().LoadPprof(id);
    if (!bytes) throw BadRequest(http::status::not_found, "no such snapshot: " + id);
    return Text(req, http::status::ok, std::move(*bytes), "application/octet-stream");
  }
  std::string error;
  auto doc = c.snapshots().Load(id, &error);
  if (!doc) throw BadRequest(http::status::not_found, error);
  return Json(req, *doc);
}

HttpResponse StaticFile(const HttpRequest& req, const std::string& path, Collector& c) {
  namespace fs = std::filesystem;
  std::string rel = path == "/" ? "index.html" : path.substr(1);
  // Decoded path segments: refuse anything that could leave the UI folder.
  if (rel.empty() || rel.find("..") != std::string::npos || rel.find('\0') != std::string::npos ||
      rel.find('\\') != std::string::npos || rel.front() == '/') {
    throw BadRequest(http::status::not_found, "not found");
  }
  std::error_code ec;
  fs::path root = fs::canonical(c.config().ui_dir, ec);
  if (ec) throw BadRequest(http::status::not_found, "UI not installed at " + c.config().ui_dir);
  fs::path file = fs::weakly_canonical(root / rel, ec);
  auto [r, f] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
  if (ec || r != root.end() || !fs::is_regular_file(file, ec)) {
    throw BadRequest(http::status::not_found, "not found: " + path);
  }
  auto body = ReadSmallFile(file.string(), 16 << 20);
  if (!body) throw BadRequest(http::status::not_found, "not found: " + path);
  HttpResponse res = Text(req, http::status::ok, std::move(*body), MimeType(file.string()));
  res.set(http::field::cache_control, "no-cache");
  res.set("Content-Security-Policy",
          "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'");
  return res;
}

// Credentials: "Authorization: Bearer T", or the heapwatch_token cookie that
// "/?token=T" sets so a browser can open the UI.
bool Authorized(const HttpRequest& req, const Query& q, const std::string& token) {
  if (token.empty()) return true;
  auto auth = req[http::field::authorization];
  if (auth.starts_with("Bearer ") && TokenMatches(std::string(auth.substr(7)), token)) return true;
  std::string cookies(req[http::field::cookie]);
  for (size_t pos = 0; pos < cookies.size();) {
    size_t end = cookies.find(';', pos);
    if (end == std::string::npos) end = cookies.size();
    std::string item = cookies.substr(pos, end - pos);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    if (item.starts_with("heapwatch_token=") && TokenMatches(item.substr(16), token)) return true;
    pos = end + 1;
  }
  return q.Has("token") && TokenMatches(q.Param("token"), token);
}

HttpResponse Route(const HttpRequest& req, const Query& q, Collector& c) {
  const std::string& path = q.path;
  bool get = req.method() == http::verb::get || req.method() == http::verb::head;
  if (path == "/healthz") return Text(req, http::status::ok, "ok\n");
  if (path == "/readyz") {
    std::string reason = c.NotReadyReason();
    return reason.empty() ? Text(req, http::status::ok, "ready\n")
                          : Text(req, http::status::service_unavailable, reason + "\n");
  }
  if (!Authorized(req, q, c.config().token)) {
    bool api = path.starts_with("/api/") || path.starts_with("/debug/") || path == "/metrics";
    // A person opening the UI gets a page that says how to get in; tools get JSON.
    HttpResponse res =
        api ? Error(req, http::status::unauthorized, "missing or wrong bearer token")
            : Text(req, http::status::unauthorized,
                   "<!doctype html><title>heapwatch: token required</title>"
                   "<p>This heapwatch collector requires its access token. Open "
                   "<code>/?token=&lt;token&gt;</code> once; the browser then keeps it in a cookie.</p>",
                   "text/html; charset=utf-8");
    res.set(http::field::www_authenticate, "Bearer realm=\"heapwatch\"");
    return res;
  }
  if (path == "/api/v1/snapshots") {
    if (!get && req.method() != http::verb::post) {
      return Error(req, http::status::method_not_allowed, "GET or POST");
    }
    return Snapshots(req, q, c);
  }
  if (!get) return Error(req, http::status::method_not_allowed, "only GET here");
  if (path == "/metrics") {
    return Text(req, http::status::ok, RenderMetrics(c), "text/plain; version=0.0.4; charset=utf-8");
  }
  if (path == "/debug/pprof/heap") return Pprof(req, q, c);
  if (path == "/api/v1/processes") return Processes(req, c);
  if (path == "/api/v1/profile") return Profile(req, q, c);
  if (path == "/api/v1/timeline") return Timeline(req, q, c);
  if (path == "/api/v1/leaks") return Leaks(req, q, c);
  if (path == "/api/v1/alerts") return Alerts(req, c);
  if (path.starts_with("/api/v1/snapshots/")) return Snapshot(req, path.substr(18), c);
  if (path.starts_with("/api/") || path.starts_with("/debug/")) {
    return Error(req, http::status::not_found, "no such endpoint: " + path);
  }
  HttpResponse res = StaticFile(req, path, c);
  if (q.Has("token") && !c.config().token.empty()) {
    res.set(http::field::set_cookie,
            "heapwatch_token=" + q.Param("token") + "; HttpOnly; SameSite=Strict; Path=/");
  }
  return res;
}

}  // namespace

bool TokenMatches(const std::string& presented, const std::string& expected) {
  // Length is not secret; the bytes are compared without early exit.
  if (presented.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(presented[i] ^ expected[i]);
  }
  return diff == 0;
}

const char* MimeType(const std::string& path) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".json", "application/json"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
      {".ico", "image/x-icon"}, {".txt", "text/plain; charset=utf-8"}};
  for (const auto& [ext, type] : kTypes) {
    if (path.ends_with(ext)) return type;
  }
  return "application/octet-stream";
}

json ProcessJson(const Process& p, Collector& c) {
  const auto& s = p.shim_stats();
  const auto& k = p.counters();
  std::optional<uint64_t> rss;
  if (!p.timeline().empty()) rss = p.timeline().back().rss_bytes;
  return {{"pid", p.pid()},
          {"ppid", p.ppid()},
          {"uid", p.uid()},
          {"exe", p.exe()},
          {"state", p.exited() ? "exited" : "running"},
          {"connected", p.open_connections() > 0},
          {"start_time", static_cast<double>(p.start_time_ns()) / 1e9},
          {"last_seen", p.last_seen()},
          {"sample_bytes", p.sample_bytes()},
          {"heap_bytes", p.heap_bytes()},
          {"heap_objects", p.heap_objects()},
          {"alloc_bytes", p.alloc_bytes()},
          {"alloc_objects", p.alloc_objects()},
          {"rss_bytes", OptionalNumber(rss)},
          {"cgroup_usage_bytes", OptionalNumber(c.CgroupUsage(p))},
          {"limit_bytes", OptionalNumber(c.LimitFor(p))},
          {"stacks", p.stacks().size()},
          {"live_samples", p.live_samples()},
          {"modules", p.module_history().loaded()},
          {"counters",
           {{"sampled_allocs", s.sampled_allocs},
            {"sampled_frees", s.sampled_frees},
            {"dropped_events", s.dropped_events},
            {"table_full", s.table_full},
            {"unwind_failures", s.unwind_failures},
            {"reconnects", s.reconnects},
            {"shim_live_samples", s.live_samples},
            {"bytes_sent", s.bytes_sent},
            {"events", k.events},
            {"resyncs", k.resyncs},
            {"connections", k.connections},
            {"unknown_frees", k.unknown_frees},
            {"unknown_stacks", k.unknown_stacks},
            {"evicted_stacks", k.evicted_stacks},
            {"evicted_samples", k.evicted_samples},
            {"history_thinned", k.history_thinned},
            {"dropped_modules", p.module_history().dropped()}}}};
}

json TimelineJson(const Process& p, Collector& c) {
  json points = json::array();
  for (const auto& pt : p.timeline()) {
    points.push_back({{"t", pt.time},
                      {"heap_bytes", pt.heap_bytes},
                      {"rss_bytes", OptionalNumber(pt.rss_bytes)},
                      {"cgroup_bytes", OptionalNumber(pt.cgroup_bytes)}});
  }
  return {{"pid", p.pid()},
          {"limit_bytes", OptionalNumber(c.LimitFor(p))},
          {"points", std::move(points)},
          {"prediction", p.exited() ? json(nullptr) : PredictionJson(c.analyzer().Find(p))}};
}

HttpResponse HandleRequest(const HttpRequest& req, Collector& c) {
  HttpResponse res;
  try {
    auto parsed = boost::urls::parse_origin_form(req.target());
    if (!parsed) {
      res = Error(req, http::status::bad_request, "malformed request target");
    } else {
      Query q;
      q.path = std::string(parsed->path());
      for (auto param : parsed->params()) q.params[param.key] = param.value;
      res = Route(req, q, c);
    }
  } catch (const BadRequest& e) {
    res = Error(req, e.status(), e.what());
  } catch (const std::exception& e) {
    // A bug must not take the sidecar down: answer 500 and log it.
    Log(LogLevel::kError, "request failed", {{"target", std::string(req.target())}, {"error", e.what()}});
    res = Error(req, http::status::internal_server_error, e.what());
  }
  if (req.method() == http::verb::head) res.body().clear();
  ++c.http_responses()[res.result_int()];
  return res;
}

}  // namespace heapwatch::collector
