// Accepts the shims' connections on the Unix socket and feeds their frames
// into the ProcessTable. Runs on the collector's single io_context thread.
//
// The socket is created with Config::socket_mode; each peer's pid and uid come
// from SO_PEERCRED (never from what the client claims), and peers whose uid is
// neither ours, root, nor allowed by --allow-uids are refused and counted.
// A malformed frame closes that connection only, with a logged, counted reason.
#ifndef HEAPWATCH_COLLECTOR_INGEST_SERVER_H_
#define HEAPWATCH_COLLECTOR_INGEST_SERVER_H_

#include <array>
#include <boost/asio.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "collector/config.h"
#include "collector/frame_decoder.h"
#include "collector/process_table.h"

namespace heapwatch::collector {

struct IngestStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t bytes = 0;
  uint64_t frames = 0;
  // Connections closed or refused, by reason (decode errors by their name,
  // plus "peer_refused", "too_many_connections", "process_table_full",
  // "read_error", "truncated_frame": the peer closed mid-frame).
  std::map<std::string, uint64_t> errors;
};

class IngestServer {
 public:
  using Clock = double (*)();

  IngestServer(boost::asio::io_context& io, const Config& config, ProcessTable& table);
  ~IngestServer();

  // Creates, binds and listens on the socket. Returns an error message on
  // failure (the caller decides whether that is fatal).
  std::string Start();
  void Stop();

  bool listening() const { return listening_; }
  const IngestStats& stats() const { return stats_; }
  // Called for every decoded frame of a process (after it is applied); lets
  // the symbolizer learn new stacks. May be empty.
  std::function<void(Process&)> on_new_stacks;

 private:
  class Session;
  void Accept();
  bool PeerAllowed(uint32_t uid) const;
  void CountError(const std::string& reason) { ++stats_.errors[reason]; }

  boost::asio::io_context& io_;
  const Config& config_;
  ProcessTable& table_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  bool listening_ = false;
  IngestStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Wall-clock seconds since the epoch.
double NowSeconds();

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_INGEST_SERVER_H_
