#include "collector/alerts.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace heapwatch::collector {

namespace {

std::string Mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", bytes / 1048576.0);
  return buf;
}

std::string Rate(double bytes_per_sec) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB/s", bytes_per_sec / 1048576.0);
  return buf;
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f s", s);
  return buf;
}

std::string Percent(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f%%", ratio * 100);
  return buf;
}

}  // namespace

const char* AlertStateName(AlertState state) {
  switch (state) {
    case AlertState::kPending: return "pending";
    case AlertState::kFiring: return "firing";
    case AlertState::kResolved: return "resolved";
  }
  return "unknown";
}

std::vector<AlertCondition> EvaluateRules(const AlertConfig& config, const ProcessAnalysis& analysis,
                                          const std::string& exe, uint32_t pid) {
  std::vector<AlertCondition> out;
  const Prediction& p = analysis.prediction;
  std::string who = exe + " (pid " + std::to_string(pid) + ")";

  AlertCondition oom{"time_to_oom", false, "critical", "", "", 0, config.oom_seconds};
  if (p.time_to_oom && std::isfinite(*p.time_to_oom)) {
    oom.value = *p.time_to_oom;
    oom.active = p.trusted && *p.time_to_oom < config.oom_seconds;
    oom.max_for = *p.time_to_oom / 4;
    oom.summary = who + " will reach its memory limit in about " + Seconds(*p.time_to_oom);
    oom.description = p.source + " usage " + Mib(p.usage) + " of " + Mib(static_cast<double>(p.limit.value_or(0))) +
                      ", growing " + Rate(std::max(0.0, std::min(p.trend.slope, p.trend.recent_slope))) +
                      " over the last " + Seconds(p.trend.span);
  }
  out.push_back(std::move(oom));

  AlertCondition usage{"memory_usage", false, "warning", "", "", 0, config.usage_ratio};
  if (p.limit && *p.limit > 0 && p.source != "heap") {
    usage.value = p.usage / static_cast<double>(*p.limit);
    usage.active = usage.value > config.usage_ratio;
    usage.summary = who + " uses " + Percent(usage.value) + " of its memory limit";
    usage.description = p.source + " usage " + Mib(p.usage) + " of " + Mib(static_cast<double>(*p.limit));
  }
  out.push_back(std::move(usage));

  AlertCondition leak{"leak_suspect", false, "warning", "", "", 0, config.leak_min_bytes_per_sec};
  if (!analysis.suspects.empty()) {
    const LeakSuspect& s = analysis.suspects.front();
    leak.value = s.growth_bytes_per_sec;
    leak.active = s.established && s.growth_bytes_per_sec >= config.leak_min_bytes_per_sec &&
                  s.share_of_growth >= config.leak_min_share && s.score >= config.leak_min_score;
    char buf[160];
    std::snprintf(buf, sizeof(buf), " (score %.2f, %s of growth, %s live)", s.score,
                  Percent(s.share_of_growth).c_str(), Mib(s.live_bytes).c_str());
    leak.summary = who + " leaks " + Rate(s.growth_bytes_per_sec) + " from one allocation stack";
    leak.description = "live bytes of one stack keep growing" + std::string(buf);
  }
  out.push_back(std::move(leak));
  return out;
}

nlohmann::json AlertJson(const Alert& a) {
  return {{"id", a.id},
          {"rule", a.rule},
          {"pid", a.pid},
          {"exe", a.exe},
          {"state", AlertStateName(a.state)},
          {"severity", a.severity},
          {"summary", a.summary},
          {"description", a.description},
          {"pending_since", a.pending_since},
          {"started_at", a.state == AlertState::kPending ? nlohmann::json(nullptr) : nlohmann::json(a.started_at)},
          {"resolved_at", a.resolved_at ? nlohmann::json(*a.resolved_at) : nlohmann::json(nullptr)},
          {"resolution", a.resolution.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.resolution)},
          {"value", a.value},
          {"threshold", a.threshold},
          {"function", a.function.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.function)},
          {"snapshot", a.snapshot.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.snapshot)}};
}

AlertManager::AlertManager(AlertConfig config, size_t max_history)
    : config_(std::move(config)), max_history_(std::max<size_t>(max_history, 1)) {}

Alert* AlertManager::FindActive(const std::string& rule, uint32_t pid, uint64_t start_time_ns) {
  for (auto& a : alerts_) {
    if (a->state != AlertState::kResolved && a->rule == rule && a->pid == pid &&
        a->start_time_ns == start_time_ns) {
      return a.get();
    }
  }
  return nullptr;
}

std::vector<Alert*> AlertManager::Update(uint32_t pid, uint64_t start_time_ns, const std::string& exe,
                                         const std::vector<AlertCondition>& conditions, double now) {
  Trim();  // first: the alerts returned must outlive this call
  std::vector<Alert*> changed;
  for (const AlertCondition& c : conditions) {
    Alert* a = FindActive(c.rule, pid, start_time_ns);
    if (!a) {
      if (!c.active) continue;
      auto fresh = std::make_unique<Alert>();
      fresh->id = c.rule + "/" + std::to_string(pid);
      fresh->rule = c.rule;
      fresh->pid = pid;
      fresh->start_time_ns = start_time_ns;
      fresh->exe = exe;
      fresh->pending_since = now;
      a = fresh.get();
      alerts_.push_back(std::move(fresh));
    }
    if (c.active) {
      a->clear_since = 0;
      a->severity = c.severity;
      a->summary = c.summary;
      a->description = c.description;
      a->value = c.value;
      a->threshold = c.threshold;
      double for_seconds = c.max_for ? std::min(config_.for_seconds, std::max(0.0, *c.max_for)) : config_.for_seconds;
      if (a->state == AlertState::kPending && now - a->pending_since >= for_seconds) {
        a->state = AlertState::kFiring;
        a->started_at = now;
        ++fired_total_;
        changed.push_back(a);
      }
      continue;
    }
    if (a->state == AlertState::kPending) {
      // Never fired: forget it.
      alerts_.erase(std::find_if(alerts_.begin(), alerts_.end(),
                                 [a](const std::unique_ptr<Alert>& x) { return x.get() == a; }));
      continue;
    }
    if (a->clear_since == 0) a->clear_since = now;
    if (now - a->clear_since >= config_.resolve_seconds) {
      a->state = AlertState::kResolved;
      a->resolved_at = now;
      a->resolution = "condition cleared";
      changed.push_back(a);
    }
  }
  return changed;
}

std::vector<Alert*> AlertManager::ProcessGone(uint32_t pid, uint64_t start_time_ns, double now) {
  std::vector<Alert*> changed;
  for (auto it = alerts_.begin(); it != alerts_.end();) {
    Alert* a = it->get();
    if (a->pid != pid || a->start_time_ns != start_time_ns || a->state == AlertState::kResolved) {
      ++it;
      continue;
    }
    if (a->state == AlertState::kPending) {
      it = alerts_.erase(it);
      continue;
    }
    a->state = AlertState::kResolved;
    a->resolved_at = now;
    a->resolution = "process exited";
    changed.push_back(a);
    ++it;
  }
  return changed;
}

std::vector<const Alert*> AlertManager::List() const {
  std::vector<const Alert*> out;
  for (auto it = alerts_.rbegin(); it != alerts_.rend(); ++it) {
    if ((*it)->state != AlertState::kResolved) out.push_back(it->get());
  }
  for (auto it = alerts_.rbegin(); it != alerts_.rend(); ++it) {
    if ((*it)->state == AlertState::kResolved) out.push_back(it->get());
  }
  return out;
}

std::vector<Alert*> AlertManager::Firing() {
  std::vector<Alert*> out;
  for (auto& a : alerts_) {
    if (a->state == AlertState::kFiring) out.push_back(a.get());
  }
  return out;
}

size_t AlertManager::firing_count() const {
  return static_cast<size_t>(std::count_if(alerts_.begin(), alerts_.end(), [](const std::unique_ptr<Alert>& a) {
    return a->state == AlertState::kFiring;
  }));
}

void AlertManager::Trim() {
  // Only resolved alerts are history; active ones are bounded by processes × rules.
  size_t resolved = 0;
  for (const auto& a : alerts_) resolved += a->state == AlertState::kResolved;
  for (auto it = alerts_.begin(); resolved > max_history_ && it != alerts_.end();) {
    if ((*it)->state == AlertState::kResolved) {
      it = alerts_.erase(it);
      --resolved;
    } else {
      ++it;
    }
  }
}

}  // namespace heapwatch::collector
