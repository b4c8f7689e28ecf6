#include "collector/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "collector/collector.h"
#include "collector/frame_decoder.h"

namespace heapwatch::collector {

void MetricsWriter::Family(const std::string& name, const char* type, const std::string& help) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    order_.push_back(name);
    it->second.type = type;
    it->second.help = help;
  }
}

std::string MetricsWriter::EscapeLabel(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void MetricsWriter::Sample(const std::string& name, const Labels& labels, double value) {
  auto it = families_.find(name);
  if (it == families_.end()) return;  // undeclared: a programming error, dropped
  std::string& s = it->second.samples;
  s += name;
  if (!labels.empty()) {
    s += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) s += ',';
      s += labels[i].first + "=\"" + EscapeLabel(labels[i].second) + '"';
    }
    s += '}';
  }
  char buf[64];
  if (std::isnan(value)) {
    std::snprintf(buf, sizeof(buf), " NaN\n");
  } else if (std::isinf(value)) {
    std::snprintf(buf, sizeof(buf), value > 0 ? " +Inf\n" : " -Inf\n");
  } else {
    std::snprintf(buf, sizeof(buf), " %.17g\n", value);
  }
  s += buf;
}

std::string MetricsWriter::Finish() const {
  std::string out;
  for (const auto& name : order_) {
    const FamilyData& f = families_.at(name);
    out += "# HELP " + name + " " + f.help + "\n";
    out += "# TYPE " + name + " " + f.type + "\n";
    out += f.samples;
  }
  return out;
}

std::string RenderMetrics(Collector& c) {
  MetricsWriter w;
  w.Family("heapwatch_heap_bytes", "gauge", "Estimated live heap bytes (unbiased, from samples).");
  w.Family("heapwatch_heap_objects", "gauge", "Estimated live heap objects.");
  w.Family("heapwatch_allocated_bytes_total", "counter", "Estimated bytes allocated since the shim started.");
  w.Family("heapwatch_rss_bytes", "gauge", "Resident set size of the process.");
  w.Family("heapwatch_cgroup_usage_bytes", "gauge", "Memory usage of the process's cgroup.");
  w.Family("heapwatch_memory_limit_bytes", "gauge", "Memory limit that applies to the process.");
  w.Family("heapwatch_live_samples", "gauge", "Sampled allocations currently live.");
  w.Family("heapwatch_stacks", "gauge", "Unique allocation stacks kept.");
  w.Family("heapwatch_dropped_events_total", "counter", "Events the shim dropped (collector absent or slow).");
  w.Family("heapwatch_process_up", "gauge", "1 while the process runs, 0 after it exited.");
  w.Family("heapwatch_growth_bytes_per_second", "gauge",
           "Sustained growth of the process's memory usage (robust trend of its floor; 0 when not growing).");
  w.Family("heapwatch_time_to_oom_seconds", "gauge",
           "Predicted seconds until usage reaches the memory limit (absent when not growing or no limit).");
  w.Family("heapwatch_leak_suspect_bytes_per_second", "gauge", "Growth rate of the top leak suspect's live bytes.");
  w.Family("heapwatch_leak_suspect_score", "gauge", "Monotonic-growth score (0-1) of the top leak suspect.");
  for (const auto& p : c.processes().processes()) {
    MetricsWriter::Labels l = {{"pid", std::to_string(p->pid())}, {"exe", p->exe()}};
    w.Sample("heapwatch_heap_bytes", l, p->heap_bytes());
    w.Sample("heapwatch_heap_objects", l, p->heap_objects());
    w.Sample("heapwatch_allocated_bytes_total", l, p->alloc_bytes());
    if (!p->timeline().empty() && p->timeline().back().rss_bytes) {
      w.Sample("heapwatch_rss_bytes", l, static_cast<double>(*p->timeline().back().rss_bytes));
    }
    if (auto usage = c.CgroupUsage(*p)) w.Sample("heapwatch_cgroup_usage_bytes", l, static_cast<double>(*usage));
    if (auto limit = c.LimitFor(*p)) w.Sample("heapwatch_memory_limit_bytes", l, static_cast<double>(*limit));
    w.Sample("heapwatch_live_samples", l, static_cast<double>(p->live_samples()));
    w.Sample("heapwatch_stacks", l, static_cast<double>(p->stacks().size()));
    w.Sample("heapwatch_dropped_events_total", l, static_cast<double>(p->shim_stats().dropped_events));
    w.Sample("heapwatch_process_up", l, p->exited() ? 0 : 1);
    if (const ProcessAnalysis* a = c.analyzer().Find(*p); a && !p->exited()) {
      const Prediction& pr = a->prediction;
      w.Sample("heapwatch_growth_bytes_per_second", l,
               pr.growing ? std::max(0.0, std::min(pr.trend.slope, pr.trend.recent_slope)) : 0.0);
      // Only a trusted prediction (the one the time_to_oom alert uses).
      if (pr.time_to_oom && pr.trusted) w.Sample("heapwatch_time_to_oom_seconds", l, *pr.time_to_oom);
      double top = a->suspects.empty() ? 0.0 : a->suspects.front().growth_bytes_per_sec;
      w.Sample("heapwatch_leak_suspect_bytes_per_second", l, top);
      w.Sample("heapwatch_leak_suspect_score", l, a->suspects.empty() ? 0.0 : a->suspects.front().score);
    }
  }

  const IngestStats& in = c.ingest().stats();
  w.Family("heapwatch_ingest_frames_total", "counter", "Frames received from shims.");
  w.Sample("heapwatch_ingest_frames_total", {}, static_cast<double>(in.frames));
  w.Family("heapwatch_ingest_bytes_total", "counter", "Bytes received from shims.");
  w.Sample("heapwatch_ingest_bytes_total", {}, static_cast<double>(in.bytes));
  w.Family("heapwatch_ingest_connections", "gauge", "Shim connections open.");
  w.Sample("heapwatch_ingest_connections", {}, static_cast<double>(in.connections_open));
  w.Family("heapwatch_ingest_errors_total", "counter",
           "Shim connections closed or refused, by reason.");
  // Every reason is exported from the start, so rate() works from zero.
  for (int e = 1; e < static_cast<int>(DecodeError::kCount); ++e) {
    const char* reason = DecodeErrorName(static_cast<DecodeError>(e));
    auto it = in.errors.find(reason);
    w.Sample("heapwatch_ingest_errors_total", {{"reason", reason}},
             it == in.errors.end() ? 0.0 : static_cast<double>(it->second));
  }
  for (const char* reason : {"peer_refused", "too_many_connections", "process_table_full", "read_error",
                             "accept_error", "peer_credentials", "truncated_frame", "hello_timeout"}) {
    auto it = in.errors.find(reason);
    w.Sample("heapwatch_ingest_errors_total", {{"reason", reason}},
             it == in.errors.end() ? 0.0 : static_cast<double>(it->second));
  }

  uint64_t evicted_stacks = 0, evicted_samples = 0, thinned = 0, dropped_modules = 0;
  for (const auto& p : c.processes().processes()) {
    evicted_stacks += p->counters().evicted_stacks;
    evicted_samples += p->counters().evicted_samples;
    thinned += p->counters().history_thinned;
    dropped_modules += p->module_history().dropped();
  }
  w.Family("heapwatch_evictions_total", "counter", "Entries refused or dropped to keep tables bounded.");
  w.Sample("heapwatch_evictions_total", {{"table", "processes"}},
           static_cast<double>(c.processes().evicted_processes() + c.processes().rejected_processes()));
  w.Sample("heapwatch_evictions_total", {{"table", "stacks"}}, static_cast<double>(evicted_stacks));
  w.Sample("heapwatch_evictions_total", {{"table", "live_samples"}}, static_cast<double>(evicted_samples));
  w.Sample("heapwatch_evictions_total", {{"table", "history"}}, static_cast<double>(thinned));
  w.Sample("heapwatch_evictions_total", {{"table", "modules"}}, static_cast<double>(dropped_modules));
  auto sym = c.symbols().stats();
  w.Sample("heapwatch_evictions_total", {{"table", "symbols"}},
           static_cast<double>(sym.address_evictions + sym.module_evictions));

  w.Family("heapwatch_processes", "gauge", "Processes known to the collector.");
  w.Sample("heapwatch_processes", {}, static_cast<double>(c.processes().processes().size()));
  w.Family("heapwatch_symbolizer_lookups_total", "counter", "Addresses symbolized.");
  w.Sample("heapwatch_symbolizer_lookups_total", {}, static_cast<double>(sym.lookups));
  w.Family("heapwatch_symbolizer_pending_batches", "gauge",
           "Batches of addresses queued for symbolization or being symbolized; profiles read "
           "meanwhile show their frames as module+offset.");
  w.Sample("heapwatch_symbolizer_pending_batches", {}, static_cast<double>(c.symbols().pending_batches()));
  w.Family("heapwatch_symbolizer_failures_total", "counter", "Module opens that failed, by reason.");
  w.Sample("heapwatch_symbolizer_failures_total", {{"reason", "open"}}, static_cast<double>(sym.open_failures));
  w.Sample("heapwatch_symbolizer_failures_total", {{"reason", "build_id_mismatch"}},
           static_cast<double>(sym.mismatches));
  const ProfileCache::Stats& pc = c.profile_cache().stats();
  w.Family("heapwatch_profile_builds_total", "counter",
           "Profile requests by how the profile was made: updated from the cache, built anew, or "
           "built for one request (bigger than the cache's budget).");
  w.Sample("heapwatch_profile_builds_total", {{"result", "updated"}}, static_cast<double>(pc.hits));
  w.Sample("heapwatch_profile_builds_total", {{"result", "built"}}, static_cast<double>(pc.builds));
  w.Sample("heapwatch_profile_builds_total", {{"result", "oversize"}}, static_cast<double>(pc.oversize));
  w.Family("heapwatch_profile_cache_bytes", "gauge", "Estimated bytes of the profiles kept between requests.");
  w.Sample("heapwatch_profile_cache_bytes", {}, static_cast<double>(c.profile_cache().bytes()));
  w.Family("heapwatch_snapshots_written_total", "counter", "Snapshots written to the data directory.");
  w.Sample("heapwatch_snapshots_written_total", {}, static_cast<double>(c.snapshots().written()));
  w.Family("heapwatch_snapshot_errors_total", "counter", "Snapshots that could not be written.");
  w.Sample("heapwatch_snapshot_errors_total", {}, static_cast<double>(c.snapshots().write_errors()));
  w.Family("heapwatch_http_requests_total", "counter", "HTTP responses by status code.");
  for (const auto& [code, count] : c.http_responses()) {
    w.Sample("heapwatch_http_requests_total", {{"code", std::to_string(code)}}, static_cast<double>(count));
  }
  w.Family("heapwatch_http_bad_requests_total", "counter", "HTTP requests that could not be parsed.");
  w.Sample("heapwatch_http_bad_requests_total", {}, static_cast<double>(c.http_bad_requests()));
  w.Family("heapwatch_alerts_firing", "gauge", "Alerts firing now, by rule.");
  for (const char* rule : {"time_to_oom", "memory_usage", "leak_suspect"}) {
    double n = 0;
    for (const Alert* a : c.alerts().List()) n += a->rule == rule && a->state == AlertState::kFiring;
    w.Sample("heapwatch_alerts_firing", {{"rule", rule}}, n);
  }
  w.Family("heapwatch_alerts_fired_total", "counter", "Alerts that have fired since heapwatchd started.");
  w.Sample("heapwatch_alerts_fired_total", {}, static_cast<double>(c.alerts().fired_total()));
  w.Family("heapwatch_alert_notifications_total", "counter", "Alert deliveries to Alertmanager and the webhook, by outcome.");
  for (const auto& [sink, poster] : {std::pair{"alertmanager", c.alert_sinks().alertmanager()},
                                     std::pair{"webhook", c.alert_sinks().webhook()}}) {
    if (!poster) continue;
    w.Sample("heapwatch_alert_notifications_total", {{"sink", sink}, {"outcome", "sent"}},
             static_cast<double>(poster->stats().sent));
    w.Sample("heapwatch_alert_notifications_total", {{"sink", sink}, {"outcome", "failed_attempt"}},
             static_cast<double>(poster->stats().failures));
    w.Sample("heapwatch_alert_notifications_total", {{"sink", sink}, {"outcome", "dropped"}},
             static_cast<double>(poster->stats().dropped));
  }
  w.Family("heapwatch_collector_rss_bytes", "gauge", "Resident set size of heapwatchd.");
  if (auto rss = c.proc().SelfRss()) w.Sample("heapwatch_collector_rss_bytes", {}, static_cast<double>(*rss));
  w.Family("heapwatch_collector_cpu_seconds_total", "counter", "CPU time used by heapwatchd.");
  if (auto cpu = c.proc().SelfCpuSeconds()) w.Sample("heapwatch_collector_cpu_seconds_total", {}, *cpu);
  w.Family("heapwatch_collector_start_time_seconds", "gauge", "When heapwatchd started (Unix time).");
  w.Sample("heapwatch_collector_start_time_seconds", {}, c.started_at());
  return w.Finish();
}

}  // namespace heapwatch::collector
