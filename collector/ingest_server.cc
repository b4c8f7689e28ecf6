#include "collector/ingest_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "collector/log.h"

namespace heapwatch::collector {
namespace asio = boost::asio;
using stream_protocol = asio::local::stream_protocol;

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One shim connection: reads bytes, decodes frames, applies them.
class IngestServer::Session : public std::enable_shared_from_this<Session>, public FrameSink {
 public:
  Session(IngestServer& server, stream_protocol::socket socket, uint32_t pid, uint32_t uid)
      : server_(server), socket_(std::move(socket)), pid_(pid), uid_(uid), alive_(server.alive_),
        hello_timer_(socket_.get_executor()) {}

  void Start() {
    // A connection that never says hello would hold a slot (and a buffer)
    // for ever: it gets a deadline.
    hello_timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(server_.config_.hello_timeout)));
    hello_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || !*self->alive_ || self->closed_ || self->process_ || self->refused_) return;
      self->server_.CountError("hello_timeout");
      Log(LogLevel::kWarning, "closing shim connection: no hello in time",
          {{"pid", self->pid_}, {"timeout_seconds", self->server_.config_.hello_timeout}});
      self->Close();
    });
    Read();
  }

 private:
  void Read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              self->OnRead(ec, n);
                            });
  }

  void OnRead(boost::system::error_code ec, size_t n) {
    if (!*alive_) return;  // the server is gone
    if (ec) {
      if (ec != asio::error::eof && ec != asio::error::operation_aborted &&
          ec != asio::error::connection_reset) {
        server_.CountError("read_error");
        Log(LogLevel::kWarning, "ingest read failed", {{"pid", pid_}, {"error", ec.message()}});
      } else if (ec != asio::error::operation_aborted && decoder_.buffered_bytes() > 0) {
        // The peer went away in the middle of a frame: the partial frame is
        // dropped, and said so.
        server_.CountError("truncated_frame");
        Log(LogLevel::kWarning, "shim connection closed mid-frame",
            {{"pid", pid_}, {"pending_bytes", decoder_.buffered_bytes()}});
      }
      Close();
      return;
    }
    server_.stats_.bytes += n;
    uint64_t before = decoder_.frames_decoded();
    DecodeError err = decoder_.Feed({buffer_.data(), n}, *this);
    server_.stats_.frames += decoder_.frames_decoded() - before;
    if (process_ && new_stacks_ && server_.on_new_stacks) server_.on_new_stacks(*process_);
    new_stacks_ = false;
    if (err != DecodeError::kNone) {
      server_.CountError(DecodeErrorName(err));
      Log(LogLevel::kWarning, "closing shim connection: malformed frame",
          {{"pid", pid_}, {"reason", DecodeErrorName(err)}});
      Close();
      return;
    }
    if (refused_) {
      Close();
      return;
    }
    Read();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    hello_timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);
    --server_.stats_.connections_open;
    if (process_) {
      server_.table_.Detach(process_, NowSeconds());
      process_ = nullptr;
    }
  }

  // --- FrameSink ---------------------------------------------------------
  void OnHello(const HelloMsg& msg) override {
    if (msg.hello.pid != pid_) {
      // Another pid namespace, or a liar: SO_PEERCRED is the truth.
      Log(LogLevel::kDebug, "hello pid differs from SO_PEERCRED",
          {{"claimed", msg.hello.pid}, {"peer", pid_}});
    }
    hello_timer_.cancel();
    process_ = server_.table_.Attach(pid_, uid_, msg, NowSeconds());
    if (!process_) {
      server_.CountError("process_table_full");
      Log(LogLevel::kWarning, "refusing process: table full of live processes", {{"pid", pid_}});
      refused_ = true;
      return;
    }
    Log(LogLevel::kInfo, "process connected",
        {{"pid", pid_}, {"exe", std::string(msg.exe)}, {"sample_bytes", msg.hello.sample_bytes}});
  }
  void OnModulesReset() override {
    if (process_) process_->ResetModules();
  }
  void OnModule(const ModuleMsg& msg) override {
    if (process_) process_->AddModule(msg);
    new_stacks_ = true;
  }
  void OnStack(const StackMsg& msg) override {
    if (process_) process_->AddStack(msg);
    new_stacks_ = true;
  }
  void OnEvents(const uint8_t* records, uint32_t count) override {
    if (process_) process_->ApplyEvents(records, count);
  }
  void OnResyncBegin(const wire::ResyncMarker&) override {
    if (process_) process_->BeginResync();
  }
  void OnResyncEnd(const wire::ResyncMarker&) override {
    if (process_) process_->EndResync();
  }
  void OnStats(const wire::Stats& stats) override {
    if (process_) process_->SetShimStats(stats);
  }

  IngestServer& server_;
  stream_protocol::socket socket_;
  const uint32_t pid_, uid_;
  std::shared_ptr<bool> alive_;
  std::array<uint8_t, 64 * 1024> buffer_;
  FrameDecoder decoder_;
  Process* process_ = nullptr;
  bool refused_ = false;
  bool closed_ = false;
  bool new_stacks_ = false;
  asio::steady_timer hello_timer_;
};

IngestServer::IngestServer(asio::io_context& io, const Config& config, ProcessTable& table)
    : io_(io), config_(config), table_(table), acceptor_(io) {}

IngestServer::~IngestServer() {
  *alive_ = false;
  Stop();
}

std::string IngestServer::Start() {
  namespace fs = std::filesystem;
  const std::string& path = config_.socket_path;
  if (path.size() >= sizeof(sockaddr_un::sun_path)) return "socket path too long: " + path;
  std::error_code fec;
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, fec);
  if (fec) return "cannot create " + parent.string() + ": " + fec.message();

  // A socket file left by a collector that died: remove it, unless a live
  // collector still answers on it.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return path + " exists and is not a socket";
    stream_protocol::socket probe(io_);
    boost::system::error_code ec;
    probe.connect(stream_protocol::endpoint(path), ec);
    if (!ec) return "another collector is listening on " + path;
    ::unlink(path.c_str());
  }

  boost::system::error_code ec;
  acceptor_.open(stream_protocol(), ec);
  // Bind under a restrictive umask so the socket never exists with looser
  // permissions than asked, even for an instant.
  mode_t old_mask = ::umask(0777 & ~config_.socket_mode);
  if (!ec) acceptor_.bind(stream_protocol::endpoint(path), ec);
  ::umask(old_mask);
  if (!ec && ::chmod(path.c_str(), config_.socket_mode) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return "cannot listen on " + path + ": " + ec.message();
  }
  listening_ = true;
  Accept();
  return {};
}

void IngestServer::Stop() {
  if (!listening_) return;
  listening_ = false;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  ::unlink(config_.socket_path.c_str());
}

bool IngestServer::PeerAllowed(uint32_t uid) const {
  if (config_.allow_any_uid || uid == 0 || uid == ::getuid()) return true;
  for (uint32_t allowed : config_.allow_uids) {
    if (allowed == uid) return true;
  }
  return false;
}

void IngestServer::Accept() {
  acceptor_.async_accept([this, alive = alive_](boost::system::error_code ec,
                                                stream_protocol::socket socket) {
    if (!*alive || !listening_) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        CountError("accept_error");
        Log(LogLevel::kWarning, "accept failed", {{"error", ec.message()}});
      }
      Accept();
      return;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      CountError("peer_credentials");
    } else if (!PeerAllowed(cred.uid)) {
      CountError("peer_refused");
      Log(LogLevel::kWarning, "refusing shim connection from disallowed uid",
          {{"pid", cred.pid}, {"uid", cred.uid}});
    } else if (stats_.connections_open >= config_.limits.max_connections) {
      CountError("too_many_connections");
    } else {
      ++stats_.connections_accepted;
      ++stats_.connections_open;
      std::make_shared<Session>(*this, std::move(socket), static_cast<uint32_t>(cred.pid), cred.uid)
          ->Start();
    }
    Accept();
  });
}

}  // namespace heapwatch::collector
