#include "collector/collector.h"

#include "collector/api.h"
#include "collector/log.h"
#include "collector/pprof.h"
#include "collector/profile_data.h"

namespace heapwatch::collector {

Collector::Collector(Config config)
    : config_(std::move(config)),
      signals_(io_, SIGTERM, SIGINT),
      poll_timer_(io_),
      table_(config_.limits),
      proc_(config_.proc_root),
      symbols_(config_.proc_root),
      snapshots_(config_.data_dir, config_.limits.max_snapshots),
      ingest_(io_, config_, table_),
      http_(io_, [this](const HttpRequest& req) { return HandleRequest(req, *this); }),
      analyzer_(config_.analysis),
      alerts_(config_.alerts),
      sinks_(io_, config_.alerts) {
  ingest_.on_new_stacks = [this](Process& p) { symbols_.Prefetch(p); };
}

Collector::~Collector() = default;

std::string Collector::Start() {
  started_at_ = NowSeconds();
  snapshot_init_error_ = snapshots_.Init();
  if (!snapshot_init_error_.empty()) {
    // Not fatal: profiles are still served; readiness says what is wrong.
    Log(LogLevel::kError, "snapshots unavailable", {{"error", snapshot_init_error_}});
  }
  if (std::string err = ingest_.Start(); !err.empty()) return err;
  if (std::string err = http_.Start(config_.http_host, config_.http_port); !err.empty()) return err;
  sinks_.SetGeneratorUrl("http://" + config_.http_host + ":" + std::to_string(http_.port()) + "/api/v1/alerts");
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    Log(LogLevel::kInfo, "stopping", {{"signal", signo}});
    Stop();
  });
  SchedulePoll();
  Log(LogLevel::kInfo, "heapwatchd started",
      {{"socket", config_.socket_path},
       {"http", config_.http_host + ":" + std::to_string(http_.port())},
       {"data_dir", config_.data_dir},
       {"auth", config_.token.empty() ? "none" : "bearer"}});
  return {};
}

void Collector::Run() { io_.run(); }

void Collector::Stop() {
  boost::system::error_code ignored;
  poll_timer_.cancel();
  signals_.cancel(ignored);
  ingest_.Stop();
  http_.Stop();
  io_.stop();
}

std::string Collector::NotReadyReason() const {
  if (!ingest_.listening()) return "ingest socket not bound";
  if (std::string err = snapshots_.CheckWritable(); !err.empty()) return err;
  return {};
}

void Collector::SchedulePoll() {
  poll_timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(config_.poll_interval)));
  poll_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    PollOnce();
    SchedulePoll();
  });
}

std::optional<uint64_t> Collector::LimitFor(const Process& process) const {
  if (config_.memory_limit) return config_.memory_limit;
  auto it = latest_.find(&process);
  return it == latest_.end() ? std::nullopt : it->second.cgroup_limit;
}

std::optional<uint64_t> Collector::CgroupUsage(const Process& process) const {
  auto it = latest_.find(&process);
  return it == latest_.end() ? std::nullopt : it->second.cgroup_usage;
}

void Collector::PollOnce() {
  double now = NowSeconds();
  std::map<const Process*, Latest> latest;
  for (const auto& p : table_.processes()) {
    if (p->exited()) continue;
    if (!proc_.Exists(p->pid())) {
      p->MarkExited(now);
      Log(LogLevel::kInfo, "process exited", {{"pid", p->pid()}, {"exe", p->exe()}});
      continue;
    }
    Latest l;
    l.rss = proc_.Rss(p->pid());
    CgroupMemory cg = proc_.Cgroup(p->pid());
    l.cgroup_usage = cg.usage;
    l.cgroup_limit = cg.limit;
    latest[p.get()] = l;
    p->RecordPoint(now, l.rss, l.cgroup_usage, config_.memory_limit ? config_.memory_limit : l.cgroup_limit);
  }
  // Keep the last figures of exited processes too (they no longer change).
  for (const auto& p : table_.processes()) {
    if (latest.count(p.get())) continue;
    if (auto it = latest_.find(p.get()); it != latest_.end()) latest[p.get()] = it->second;
  }
  latest_.swap(latest);

  // Growth analysis and alerts. An exited process's alerts resolve (there is
  // nothing left to watch); its last analysis stays for /api/v1/leaks.
  std::vector<const Process*> known;
  for (const auto& p : table_.processes()) {
    known.push_back(p.get());
    if (p->exited()) {
      for (Alert* a : alerts_.ProcessGone(p->pid(), p->start_time_ns(), now)) sinks_.Notify(*a, now);
      continue;
    }
    EvaluateAlerts(*p, analyzer_.Update(*p, now, LimitFor(*p)), now);
  }
  analyzer_.Retain(known);
  profiles_.Expire(now);
  sinks_.Resend(alerts_.Firing(), now);
}

void Collector::EvaluateAlerts(Process& process, const ProcessAnalysis& analysis, double now) {
  std::vector<AlertCondition> conditions = EvaluateRules(config_.alerts, analysis, process.exe(), process.pid());
  std::vector<Alert*> changed = alerts_.Update(process.pid(), process.start_time_ns(), process.exe(), conditions, now);
  for (Alert* a : changed) {
    if (a->state == AlertState::kFiring) OnAlertFired(process, *a, now);
    sinks_.Notify(*a, now);
  }
}

void Collector::OnAlertFired(Process& process, Alert& alert, double now) {
  // Evidence first: the process may be killed at any moment, and the
  // snapshot must be on disk before anyone is told.
  const ProcessAnalysis* analysis = analyzer_.Find(process);
  if (analysis && !analysis->suspects.empty()) {
    const ProfileData& data = Profile(process, now);
    nlohmann::json leaks = LeaksJson(process, analysis, data, now, 1);
    if (!leaks["suspects"].empty() && leaks["suspects"][0]["function"].is_string()) {
      alert.function = leaks["suspects"][0]["function"].get<std::string>();
      alert.description += "; top leak suspect: " + alert.function;
    }
  }
  // Rules that fire together share one snapshot.
  for (const Alert* other : alerts_.Firing()) {
    if (other != &alert && other->pid == alert.pid && other->start_time_ns == alert.start_time_ns &&
        !other->snapshot.empty() && now - other->started_at < 30) {
      alert.snapshot = other->snapshot;
      return;
    }
  }
  std::string error;
  if (auto id = TakeSnapshot(process, "alert:" + alert.rule, &error, &alert)) {
    alert.snapshot = *id;
  } else {
    Log(LogLevel::kError, "alert evidence not saved", {{"alert", alert.id}, {"error", error}});
  }
}

std::optional<std::string> Collector::TakeSnapshot(const Process& process, const std::string& reason,
                                                   std::string* error, const Alert* alert) {
  double now = NowSeconds();
  const ProfileData& data = Profile(process, now);
  nlohmann::json alerts = nlohmann::json::array();
  for (const Alert* a : alerts_.List()) {
    if (a->pid == process.pid() && a->start_time_ns == process.start_time_ns()) alerts.push_back(AlertJson(*a));
  }
  nlohmann::json doc = {{"process", ProcessJson(process, *this)},
                        {"profile", ProfileDataToJson(data)},
                        {"timeline", TimelineJson(process, *this)},
                        {"leaks", LeaksJson(process, analyzer_.Find(process), data, now)},
                        {"alerts", std::move(alerts)},
                        {"alert", alert ? AlertJson(*alert) : nlohmann::json(nullptr)}};
  std::string pprof = Pprof(process, SampleType::kInuseSpace, now);
  return snapshots_.Save(process.pid(), now, reason, std::move(doc), pprof, error);
}

}  // namespace heapwatch::collector
