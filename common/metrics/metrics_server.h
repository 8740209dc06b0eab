// The /metrics endpoint of a daemon: prometheus-cpp's pull Exposer (an
// embedded civetweb HTTP server) on its own address, separate from gRPC,
// serving the Prometheus text format of the collectors given to it.
//
// Thread-safe: civetweb's threads call the collectors' Collect() at each
// scrape; the collectors must outlive the server (they are held by
// shared_ptr). Destruction stops the HTTP server first, within a few tens
// of milliseconds.
#ifndef COMMON_METRICS_METRICS_SERVER_H_
#define COMMON_METRICS_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace prometheus {
class Exposer;
}

namespace pc::metrics {

class MetricsServer {
 public:
  // Listens on `address` (host:port; [v6]:port; port 0 picks one) and
  // serves GET /metrics. An error if the address is malformed or cannot be
  // bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address,
      std::vector<std::shared_ptr<prometheus::Collectable>> collectables);
  ~MetricsServer();

  int port() const { return port_; }

 private:
  MetricsServer() = default;

  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  std::string wake_host_;  // numeric address that reaches the listener
};

// For a daemon's main(): starts the server unless `address` is empty, and
// logs one line either way (event metrics_started with the port, or
// metrics_error). A failure leaves the daemon running without metrics:
// captures matter more than their numbers. Returns null when none runs.
std::unique_ptr<MetricsServer> StartMetricsOrLog(
    const std::string& address,
    std::vector<std::shared_ptr<prometheus::Collectable>> collectables);

}  // namespace pc::metrics

#endif  // COMMON_METRICS_METRICS_SERVER_H_
