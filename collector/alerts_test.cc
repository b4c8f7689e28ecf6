#include "collector/alerts.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <thread>

#include "collector/alert_sinks.h"

namespace heapwatch::collector {
namespace {

AlertCondition Cond(bool active, const std::string& rule = "time_to_oom") {
  return {rule, active, "critical", "summary", "description", active ? 10.0 : 1000.0, 900};
}

AlertConfig Config(double for_s = 10, double resolve_s = 30) {
  AlertConfig c;
  c.for_seconds = for_s;
  c.resolve_seconds = resolve_s;
  return c;
}

TEST(AlertManagerTest, FiresOnlyAfterTheConditionHeldForTheForPeriod) {
  AlertManager m(Config());
  EXPECT_TRUE(m.Update(1, 7, "/bin/a", {Cond(true)}, 100).empty());
  ASSERT_EQ(m.List().size(), 1u);
  EXPECT_EQ(m.List()[0]->state, AlertState::kPending);
  EXPECT_TRUE(m.Update(1, 7, "/bin/a", {Cond(true)}, 109.9).empty());
  auto fired = m.Update(1, 7, "/bin/a", {Cond(true)}, 110);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0]->state, AlertState::kFiring);
  EXPECT_EQ(fired[0]->id, "time_to_oom/1");
  EXPECT_DOUBLE_EQ(fired[0]->pending_since, 100);
  EXPECT_DOUBLE_EQ(fired[0]->started_at, 110);
  // Still holding: no second transition.
  EXPECT_TRUE(m.Update(1, 7, "/bin/a", {Cond(true)}, 111).empty());
  EXPECT_EQ(m.firing_count(), 1u);
  EXPECT_EQ(m.fired_total(), 1u);
}

TEST(AlertManagerTest, ImminentOomShortensTheForPeriod) {
  AlertManager m(Config(10, 30));
  AlertCondition c = Cond(true);
  c.max_for = 4;  // predicted OOM in 16 s: wait at most 4 s
  m.Update(1, 7, "/bin/a", {c}, 100);
  EXPECT_TRUE(m.Update(1, 7, "/bin/a", {c}, 103).empty());
  EXPECT_EQ(m.Update(1, 7, "/bin/a", {c}, 104).size(), 1u);
  // The rule sets the cap from the prediction.
  ProcessAnalysis a;
  a.prediction.time_to_oom = 20;
  a.prediction.trusted = true;
  a.prediction.limit = 1 << 20;
  auto conds = EvaluateRules(AlertConfig{}, a, "/bin/a", 1);
  ASSERT_TRUE(conds[0].max_for.has_value());
  EXPECT_DOUBLE_EQ(*conds[0].max_for, 5);
}

TEST(AlertManagerTest, PendingThatClearsNeverFires) {
  AlertManager m(Config());
  m.Update(1, 7, "/bin/a", {Cond(true)}, 100);
  EXPECT_TRUE(m.Update(1, 7, "/bin/a", {Cond(false)}, 105).empty());
  EXPECT_TRUE(m.List().empty());
  // The for period starts again from scratch.
  m.Update(1, 7, "/bin/a", {Cond(true)}, 106);
  EXPECT_TRUE(m.Update(1, 7, "/bin/a", {Cond(true)}, 115).empty());
  EXPECT_EQ(m.Update(1, 7, "/bin/a", {Cond(true)}, 116).size(), 1u);
}

TEST(AlertManagerTest, FlickeringConditionDoesNotFlap) {
  AlertManager m(Config(0, 30));
  ASSERT_EQ(m.Update(1, 7, "/bin/a", {Cond(true)}, 0).size(), 1u);  // for 0: fires at once
  // Off and on, each gap shorter than the resolve period: one firing alert throughout.
  for (int t = 1; t < 200; ++t) {
    bool active = (t / 7) % 2 == 0;
    EXPECT_TRUE(m.Update(1, 7, "/bin/a", {Cond(active)}, t).empty()) << t;
  }
  EXPECT_EQ(m.firing_count(), 1u);
  EXPECT_EQ(m.fired_total(), 1u);
  // Clear for the resolve period: resolves once.
  std::vector<Alert*> resolved;
  for (int t = 200; t <= 240; ++t) {
    for (Alert* a : m.Update(1, 7, "/bin/a", {Cond(false)}, t)) resolved.push_back(a);
  }
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0]->state, AlertState::kResolved);
  EXPECT_EQ(resolved[0]->resolution, "condition cleared");
  ASSERT_TRUE(resolved[0]->resolved_at.has_value());
  EXPECT_GE(*resolved[0]->resolved_at, 230);
  EXPECT_EQ(m.firing_count(), 0u);
}

TEST(AlertManagerTest, NewEpisodeIsANewAlertAndHistoryIsKept) {
  AlertManager m(Config(5, 5));
  m.Update(1, 7, "/bin/a", {Cond(true)}, 0);
  m.Update(1, 7, "/bin/a", {Cond(true)}, 5);
  m.Update(1, 7, "/bin/a", {Cond(false)}, 6);
  ASSERT_EQ(m.Update(1, 7, "/bin/a", {Cond(false)}, 11).size(), 1u);
  m.Update(1, 7, "/bin/a", {Cond(true)}, 20);
  ASSERT_EQ(m.Update(1, 7, "/bin/a", {Cond(true)}, 25).size(), 1u);
  auto list = m.List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]->state, AlertState::kFiring);  // active first
  EXPECT_EQ(list[1]->state, AlertState::kResolved);
}

TEST(AlertManagerTest, RulesAndProcessesAreIndependentAndExitResolves) {
  AlertManager m(Config(0, 30));
  auto a = m.Update(1, 7, "/bin/a", {Cond(true, "time_to_oom"), Cond(true, "leak_suspect")}, 0);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(m.Update(2, 9, "/bin/b", {Cond(true, "time_to_oom")}, 0).size(), 1u);
  // Same pid, new instance (exec or reuse): separate alerts.
  EXPECT_EQ(m.Update(1, 8, "/bin/a2", {Cond(true, "time_to_oom")}, 0).size(), 1u);
  EXPECT_EQ(m.firing_count(), 4u);
  auto gone = m.ProcessGone(1, 7, 50);
  ASSERT_EQ(gone.size(), 2u);
  for (Alert* g : gone) {
    EXPECT_EQ(g->state, AlertState::kResolved);
    EXPECT_EQ(g->resolution, "process exited");
  }
  EXPECT_EQ(m.firing_count(), 2u);
  EXPECT_TRUE(m.ProcessGone(1, 7, 51).empty());  // only once
}

TEST(AlertManagerTest, ResolvedHistoryIsBounded) {
  AlertManager m(Config(0, 0), 3);
  for (int i = 0; i < 10; ++i) {
    m.Update(static_cast<uint32_t>(i), 1, "/bin/a", {Cond(true)}, i);
    m.ProcessGone(static_cast<uint32_t>(i), 1, i + 0.5);
  }
  EXPECT_LE(m.List().size(), 4u);
}

ProcessAnalysis Analysis(std::optional<double> tto, double usage, uint64_t limit) {
  ProcessAnalysis a;
  a.prediction.source = "cgroup";
  a.prediction.usage = usage;
  a.prediction.limit = limit;
  a.prediction.time_to_oom = tto;
  a.prediction.growing = tto.has_value();
  a.prediction.trusted = tto.has_value();
  return a;
}

const AlertCondition& Find(const std::vector<AlertCondition>& v, const std::string& rule) {
  for (const auto& c : v) {
    if (c.rule == rule) return c;
  }
  throw std::runtime_error("no rule " + rule);
}

TEST(EvaluateRulesTest, ThresholdsOfEachRule) {
  AlertConfig c;  // 900 s, 0.9 of the limit, 64 KiB/s with half the growth and score 0.6
  auto conds = EvaluateRules(c, Analysis(120, 50e6, 128 << 20), "/bin/a", 1);
  ASSERT_EQ(conds.size(), 3u);
  EXPECT_TRUE(Find(conds, "time_to_oom").active);
  EXPECT_FALSE(Find(conds, "memory_usage").active);
  EXPECT_FALSE(Find(conds, "leak_suspect").active);
  EXPECT_FALSE(Find(EvaluateRules(c, Analysis(2000, 50e6, 128 << 20), "/bin/a", 1), "time_to_oom").active);
  EXPECT_FALSE(Find(EvaluateRules(c, Analysis(std::nullopt, 50e6, 128 << 20), "/bin/a", 1), "time_to_oom").active);
  EXPECT_TRUE(Find(EvaluateRules(c, Analysis(std::nullopt, 125e6, 128 << 20), "/bin/a", 1), "memory_usage").active);
  ProcessAnalysis far = Analysis(120, 50e6, 128 << 20);
  far.prediction.trusted = false;  // extrapolated too far from a short trend
  EXPECT_FALSE(Find(EvaluateRules(c, far, "/bin/a", 1), "time_to_oom").active);

  ProcessAnalysis leak = Analysis(std::nullopt, 50e6, 128 << 20);
  LeakSuspect s;
  s.growth_bytes_per_sec = 1e6;
  s.share_of_growth = 0.9;
  s.score = 0.9;
  s.established = true;
  leak.suspects.push_back(s);
  EXPECT_TRUE(Find(EvaluateRules(c, leak, "/bin/a", 1), "leak_suspect").active);
  leak.suspects[0].established = false;  // not grown for long enough yet
  EXPECT_FALSE(Find(EvaluateRules(c, leak, "/bin/a", 1), "leak_suspect").active);
  leak.suspects[0].established = true;
  leak.suspects[0].score = 0.3;  // a cache settling or a sawtooth
  EXPECT_FALSE(Find(EvaluateRules(c, leak, "/bin/a", 1), "leak_suspect").active);
  leak.suspects[0].score = 0.9;
  leak.suspects[0].share_of_growth = 0.2;  // one of many growing things
  EXPECT_FALSE(Find(EvaluateRules(c, leak, "/bin/a", 1), "leak_suspect").active);
  leak.suspects[0].share_of_growth = 0.9;
  leak.suspects[0].growth_bytes_per_sec = 1000;  // too slow to matter
  EXPECT_FALSE(Find(EvaluateRules(c, leak, "/bin/a", 1), "leak_suspect").active);
}

TEST(AlertSinksTest, AlertmanagerPayloadFollowsTheV2Schema) {
  Alert a;
  a.id = "time_to_oom/42";
  a.rule = "time_to_oom";
  a.severity = "critical";
  a.summary = "s";
  a.description = "d";
  a.pid = 42;
  a.exe = "/bin/demo";
  a.state = AlertState::kFiring;
  a.started_at = 1700000000.25;
  a.function = "SessionStore::RememberSession";
  a.snapshot = "snap-1";
  auto j = AlertmanagerAlert(a, 1700000010, 60, "http://x/api/v1/alerts");
  EXPECT_EQ(j["labels"]["alertname"], "HeapwatchOOMPredicted");
  EXPECT_EQ(j["labels"]["pid"], "42");
  EXPECT_EQ(j["labels"]["severity"], "critical");
  EXPECT_EQ(j["annotations"]["leak_function"], "SessionStore::RememberSession");
  EXPECT_EQ(j["annotations"]["snapshot"], "snap-1");
  EXPECT_EQ(j["startsAt"], "2023-11-14T22:13:20.250Z");
  EXPECT_EQ(j["endsAt"], "2023-11-14T22:17:30.000Z");  // now + 4 resend periods
  EXPECT_EQ(j["generatorURL"], "http://x/api/v1/alerts");
  for (const auto& [k, v] : j["labels"].items()) EXPECT_TRUE(v.is_string()) << k;
  a.state = AlertState::kResolved;
  a.resolved_at = 1700000005;
  EXPECT_EQ(AlertmanagerAlert(a, 1700000010, 60, "")["endsAt"], "2023-11-14T22:13:25.000Z");
  EXPECT_EQ(WebhookPayload(a)["status"], "resolved");
  EXPECT_EQ(WebhookPayload(a)["alert"]["id"], "time_to_oom/42");
}

TEST(AlertSinksTest, ParsesOnlyPlainHttpUrls) {
  std::string error;
  auto t = ParseHttpUrl("http://127.0.0.1:9093", &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, "9093");
  EXPECT_EQ(t->path, "/");
  t = ParseHttpUrl("http://hooks.local/a/b?x=1", &error);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->port, "80");
  EXPECT_EQ(t->path, "/a/b?x=1");
  t = ParseHttpUrl("http://[::1]:8080/x", &error);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, "8080");
  for (const char* bad : {"https://x", "x:80", "http://:80", "http://h:0", "http://h:99999", "http://u:p@h/",
                          "http://h/a b", ""}) {
    EXPECT_FALSE(ParseHttpUrl(bad, &error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

// A one-shot HTTP server on loopback, run by the same io_context.
struct FakeServer {
  explicit FakeServer(boost::asio::io_context& io, const char* status_line)
      : acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0}), socket(io), status(status_line) {}
  void Serve() {
    acceptor.async_accept(socket, [this](const boost::system::error_code& ec) {
      if (ec) return;
      boost::asio::async_read_until(socket, buf, "\r\n\r\n", [this](const boost::system::error_code& ec, size_t n) {
        if (ec) return;
        std::string head(boost::asio::buffers_begin(buf.data()), boost::asio::buffers_begin(buf.data()) + n);
        buf.consume(n);
        size_t len = 0;
        auto pos = head.find("Content-Length: ");
        if (pos != std::string::npos) len = std::stoul(head.substr(pos + 16));
        requests.push_back(head);
        size_t have = buf.size();
        boost::asio::async_read(socket, buf, boost::asio::transfer_exactly(len > have ? len - have : 0),
                                [this](const boost::system::error_code&, size_t) {
                                  bodies.emplace_back(boost::asio::buffers_begin(buf.data()),
                                                      boost::asio::buffers_end(buf.data()));
                                  reply = std::string(status) + "\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                                  boost::asio::async_write(socket, boost::asio::buffer(reply),
                                                           [this](const boost::system::error_code&, size_t) {
                                                             boost::system::error_code ignored;
                                                             socket.close(ignored);
                                                           });
                                });
      });
    });
  }
  uint16_t port() const { return acceptor.local_endpoint().port(); }
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::ip::tcp::socket socket;
  boost::asio::streambuf buf;
  const char* status;
  std::string reply;
  std::vector<std::string> requests, bodies;
};

TEST(HttpPosterTest, PostsJsonAndCountsSuccess) {
  boost::asio::io_context io;
  FakeServer server(io, "HTTP/1.1 200 OK");
  server.Serve();
  HttpPoster poster(io, {"127.0.0.1", std::to_string(server.port()), "/api/v2/alerts"}, 5);
  poster.Post("[{\"labels\":{}}]");
  for (int i = 0; i < 500 && poster.stats().sent == 0; ++i) io.run_for(std::chrono::milliseconds(10));
  EXPECT_EQ(poster.stats().sent, 1u);
  ASSERT_EQ(server.requests.size(), 1u);
  EXPECT_EQ(server.requests[0].rfind("POST /api/v2/alerts HTTP/1.1\r\n", 0), 0u) << server.requests[0];
  EXPECT_NE(server.requests[0].find("Content-Type: application/json"), std::string::npos);
  ASSERT_EQ(server.bodies.size(), 1u);
  EXPECT_EQ(server.bodies[0], "[{\"labels\":{}}]");
  EXPECT_EQ(poster.queued(), 0u);
}

TEST(HttpPosterTest, RetriesThenDropsWhenTheSinkIsDown) {
  boost::asio::io_context io;
  uint16_t port;
  {
    // A port that was just free: nothing listens there now.
    boost::asio::ip::tcp::acceptor probe(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  HttpPoster poster(io, {"127.0.0.1", std::to_string(port), "/"}, 2, 4, /*max_attempts=*/2);
  poster.Post("{}");
  for (int i = 0; i < 1000 && poster.stats().dropped == 0; ++i) io.run_for(std::chrono::milliseconds(10));
  EXPECT_EQ(poster.stats().sent, 0u);
  EXPECT_EQ(poster.stats().failures, 2u);
  EXPECT_EQ(poster.stats().dropped, 1u);
  EXPECT_NE(poster.stats().last_error.find("connect"), std::string::npos) << poster.stats().last_error;
}

TEST(HttpPosterTest, ErrorStatusIsAFailureAndTheQueueIsBounded) {
  boost::asio::io_context io;
  FakeServer server(io, "HTTP/1.1 400 Bad Request");
  server.Serve();
  HttpPoster poster(io, {"127.0.0.1", std::to_string(server.port()), "/"}, 5, /*max_queue=*/2, /*max_attempts=*/1);
  for (int i = 0; i < 5; ++i) poster.Post("{\"n\":" + std::to_string(i) + "}");
  EXPECT_LE(poster.queued(), 3u);  // the one in flight may stay while the queue is full
  EXPECT_GE(poster.stats().dropped, 2u);
  for (int i = 0; i < 300 && poster.stats().failures == 0; ++i) io.run_for(std::chrono::milliseconds(10));
  EXPECT_GE(poster.stats().failures, 1u);
  EXPECT_NE(poster.stats().last_error.find("HTTP 400"), std::string::npos) << poster.stats().last_error;
}

}  // namespace
}  // namespace heapwatch::collector
