// What both daemons (capture-agent, capture-aggregator) do around their gRPC
// server: stop signals taken synchronously by main(), the descriptor limit
// raised, and a plaintext server with gRPC health and reflection on.
#ifndef COMMON_DAEMON_H_
#define COMMON_DAEMON_H_

#include <signal.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace pc {

// Blocks SIGTERM and SIGINT in the calling thread and every thread started
// after it (construct it first thing in main), and ignores SIGPIPE. Wait()
// returns the stop signal once it arrives.
class StopSignals {
 public:
  StopSignals();
  int Wait();

 private:
  sigset_t set_;
};

// The soft RLIMIT_NOFILE before and after RaiseOpenFileLimit().
struct OpenFileLimit {
  uint64_t before = 0;
  uint64_t after = 0;
};

// Raises the soft RLIMIT_NOFILE to the hard limit (to fs.nr_open when the
// hard limit is unlimited): the usual soft default of 1024 is far below
// what a daemon with many files and streams may need, and the hard limit is
// what the administrator allows. An error (with the limit unchanged) only
// if setrlimit refuses.
absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit();

struct RunningServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the bound port (useful with ":0")
};

// Starts a plaintext server on `address` (host:port) with `services`, gRPC
// health and server reflection. `configure`, when set, adjusts the builder
// last (channel arguments; it may override the receive limit). An error if
// it cannot listen there.
absl::StatusOr<RunningServer> StartServer(
    const std::string& address, const std::vector<grpc::Service*>& services,
    int max_receive_message_bytes = 4 << 20,
    const std::function<void(grpc::ServerBuilder*)>& configure = nullptr);

}  // namespace pc

#endif  // COMMON_DAEMON_H_
