// The HTTP listener and sessions (Boost.Beast), in the shape of Beast's
// advanced server: the listener accepts, each session reads a request, hands
// it to a pure handler (no I/O) and writes the answer. Request bodies are
// capped, idle connections time out. Single io_context thread.
#ifndef HEAPWATCH_COLLECTOR_HTTP_SERVER_H_
#define HEAPWATCH_COLLECTOR_HTTP_SERVER_H_

#include <boost/asio.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <memory>
#include <string>

namespace heapwatch::collector {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, HttpHandler handler);
  ~HttpServer();

  // Binds host:port. Returns an error message on failure.
  std::string Start(const std::string& host, uint16_t port);
  void Stop();
  uint16_t port() const { return port_; }
  uint64_t bad_requests() const { return bad_requests_; }

 private:
  class Session;
  void Accept();

  boost::asio::io_context& io_;
  HttpHandler handler_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  uint64_t bad_requests_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_HTTP_SERVER_H_
