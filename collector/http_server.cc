#include "collector/http_server.h"

#include <boost/beast/core.hpp>
#include <chrono>

#include "collector/log.h"

namespace heapwatch::collector {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto kTimeout = std::chrono::seconds(30);
constexpr uint64_t kBodyLimit = 1 << 20;
}  // namespace

class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpServer& server, tcp::socket socket)
      : server_(server), alive_(server.alive_), stream_(std::move(socket)) {}

  void Start() { Read(); }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(kTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (!*alive_) return;
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
      return Close();
    }
    if (ec) {
      ++server_.bad_requests_;
      // A request we cannot parse gets a 400 and the connection closes.
      HttpResponse res{http::status::bad_request, 11};
      res.set(http::field::content_type, "application/json");
      res.body() = std::string(R"({"error":"malformed request: )") + ec.message() + "\"}";
      res.keep_alive(false);
      res.prepare_payload();
      return Write(std::move(res));
    }
    HttpRequest req = parser_->release();
    HttpResponse res = server_.handler_(req);
    res.keep_alive(req.keep_alive() && res.keep_alive());
    res.prepare_payload();
    Write(std::move(res));
  }

  void Write(HttpResponse res) {
    auto response = std::make_shared<HttpResponse>(std::move(res));
    stream_.expires_after(kTimeout);
    http::async_write(stream_, *response,
                      [self = shared_from_this(), response](beast::error_code ec, size_t) {
                        if (!*self->alive_) return;
                        if (ec || !response->keep_alive()) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  HttpServer& server_;
  std::shared_ptr<bool> alive_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

HttpServer::HttpServer(asio::io_context& io, HttpHandler handler)
    : io_(io), handler_(std::move(handler)), acceptor_(io) {}

HttpServer::~HttpServer() {
  *alive_ = false;
  Stop();
}

std::string HttpServer::Start(const std::string& host, uint16_t port) {
  beast::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    // Accept names too ("localhost").
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) return "cannot resolve --http host " + host;
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    acceptor_.close(ignored);
    return "cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message();
  }
  port_ = acceptor_.local_endpoint().port();
  Accept();
  return {};
}

void HttpServer::Stop() {
  beast::error_code ignored;
  acceptor_.close(ignored);
}

void HttpServer::Accept() {
  acceptor_.async_accept([this, alive = alive_](beast::error_code ec, tcp::socket socket) {
    if (!*alive || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<Session>(*this, std::move(socket))->Start();
    Accept();
  });
}

}  // namespace heapwatch::collector
