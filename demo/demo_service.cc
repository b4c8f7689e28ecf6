// heapwatch-demo: a toy request-serving service with realistic allocation
// patterns, so heapwatch has something worth looking at.
//
//   heapwatch-demo [--threads N] [--seconds S] [--requests N] [--rps R]
//                  [--leak-bytes B] [--cache-entries N] [--sawtooth-bytes B]
//
// Every request allocates and frees a parsed body and a response (churn), puts
// an entry into a bounded LRU-ish cache (which plateaus), and, when
// --leak-bytes is non-zero, remembers B bytes per request in a session table
// that is never pruned (the leak). --sawtooth-bytes grows a batch buffer that is
// flushed every few seconds. Runs until SIGTERM/SIGINT, --seconds elapse or
// --requests have been served (split over the threads). --rps 0 serves as fast
// as it can: with --requests, a fixed amount of work (bench/shim/run_programs.sh).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};

struct Options {
  int threads = 4;
  double seconds = 0;    // 0: until signalled
  uint64_t requests = 0;  // 0: no limit
  int rps = 2000;         // requests per second, all threads together; 0: unpaced
  size_t leak_bytes = 0;
  size_t cache_entries = 2000;
  size_t sawtooth_bytes = 0;
};

// Session state that is added on every request and never removed: the bug.
class SessionStore {
 public:
  __attribute__((noinline)) void RememberSession(uint64_t id, size_t bytes) {
    auto blob = std::make_unique<char[]>(bytes);
    std::memset(blob.get(), static_cast<int>(id), bytes);
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.emplace(id, std::move(blob));
  }

 private:
  std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<char[]>> sessions_;
};

// A bounded cache: fills up, then evicts, so its memory plateaus.
class ResponseCache {
 public:
  explicit ResponseCache(size_t capacity) : capacity_(capacity) {}

  __attribute__((noinline)) void Put(uint64_t key, const std::string& value) {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.count(key)) return;
    order_.push_back(key);
    index_.emplace(key, value);
    while (order_.size() > capacity_) {
      index_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  size_t capacity_;
  std::mutex mu_;
  std::deque<uint64_t> order_;
  std::unordered_map<uint64_t, std::string> index_;
};

// Accumulates records and flushes them every few seconds: a sawtooth.
class BatchWriter {
 public:
  __attribute__((noinline)) void Append(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace_back(bytes, 'b');
    auto now = std::chrono::steady_clock::now();
    if (now - last_flush_ > std::chrono::seconds(3)) {
      pending_.clear();
      pending_.shrink_to_fit();
      last_flush_ = now;
    }
  }

 private:
  std::mutex mu_;
  std::vector<std::string> pending_;
  std::chrono::steady_clock::time_point last_flush_ = std::chrono::steady_clock::now();
};

__attribute__((noinline)) std::vector<std::string> ParseRequest(uint64_t id) {
  std::vector<std::string> fields;
  for (int i = 0; i < 8; ++i) {
    fields.emplace_back(64 + (id + i) % 512, static_cast<char>('a' + i));
  }
  return fields;
}

__attribute__((noinline)) std::string RenderResponse(const std::vector<std::string>& fields) {
  std::string out;
  for (const auto& f : fields) out += f;
  return out;
}

void Serve(int worker, const Options& opt, SessionStore& sessions, ResponseCache& cache,
           BatchWriter& batches) {
  using Clock = std::chrono::steady_clock;
  const auto period =
      std::chrono::nanoseconds(opt.rps > 0 ? 1'000'000'000LL * opt.threads / opt.rps : 0);
  // This worker's share of --requests: the first `requests % threads` serve one more.
  const uint64_t share = opt.requests / static_cast<uint64_t>(opt.threads) +
                         (static_cast<uint64_t>(worker) < opt.requests % static_cast<uint64_t>(opt.threads));
  auto next = Clock::now();
  uint64_t id = static_cast<uint64_t>(worker) << 40;
  for (uint64_t served = 0; !g_stop.load(std::memory_order_relaxed); ++served) {
    if (opt.requests > 0 && served == share) break;
    ++id;
    auto fields = ParseRequest(id);
    std::string response = RenderResponse(fields);
    cache.Put(id % (opt.cache_entries * 4), response.substr(0, 256));
    if (opt.leak_bytes) sessions.RememberSession(id, opt.leak_bytes);
    if (opt.sawtooth_bytes) batches.Append(opt.sawtooth_bytes);
    if (opt.rps > 0) {
      next += period;
      std::this_thread::sleep_until(next);
    }
  }
}

bool ParseFlag(int argc, char** argv, int& i, const char* name, double& out) {
  if (std::strcmp(argv[i], name) != 0) return false;
  if (i + 1 >= argc) {
    std::fprintf(stderr, "heapwatch-demo: %s needs a value\n", name);
    std::exit(2);
  }
  out = std::strtod(argv[++i], nullptr);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    double v = 0;
    if (ParseFlag(argc, argv, i, "--threads", v)) opt.threads = std::max(1, static_cast<int>(v));
    else if (ParseFlag(argc, argv, i, "--seconds", v)) opt.seconds = v;
    else if (ParseFlag(argc, argv, i, "--requests", v)) opt.requests = static_cast<uint64_t>(std::max(0.0, v));
    else if (ParseFlag(argc, argv, i, "--rps", v)) opt.rps = std::max(0, static_cast<int>(v));
    else if (ParseFlag(argc, argv, i, "--leak-bytes", v)) opt.leak_bytes = static_cast<size_t>(v);
    else if (ParseFlag(argc, argv, i, "--cache-entries", v)) opt.cache_entries = static_cast<size_t>(v);
    else if (ParseFlag(argc, argv, i, "--sawtooth-bytes", v)) opt.sawtooth_bytes = static_cast<size_t>(v);
    else {
      std::fprintf(stderr,
                   "usage: heapwatch-demo [--threads N] [--seconds S] [--requests N] [--rps R] "
                   "[--leak-bytes B] [--cache-entries N] [--sawtooth-bytes B]\n");
      return 2;
    }
  }
  std::signal(SIGTERM, [](int) { g_stop.store(true); });
  std::signal(SIGINT, [](int) { g_stop.store(true); });

  SessionStore sessions;
  ResponseCache cache(opt.cache_entries);
  BatchWriter batches;
  std::vector<std::thread> workers;
  for (int w = 0; w < opt.threads; ++w) {
    workers.emplace_back(Serve, w, std::cref(opt), std::ref(sessions), std::ref(cache),
                         std::ref(batches));
  }
  // Waits, without polling, for the workers to end (all requests served, or
  // stopped by a signal) or for --seconds to pass.
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  std::thread joiner([&] {
    for (auto& t : workers) t.join();
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    done_cv.notify_one();
  });
  bool time_up = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    if (opt.seconds > 0) {
      time_up = !done_cv.wait_for(lock, std::chrono::duration<double>(opt.seconds), [&] { return done; });
    } else {
      done_cv.wait(lock, [&] { return done; });
    }
  }
  if (time_up) g_stop.store(true);
  joiner.join();
  std::printf("heapwatch-demo: served until %s\n",
              time_up ? "time was up" : g_stop.load() ? "signalled" : "all requests were served");
  return 0;
}
