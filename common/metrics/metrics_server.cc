#include "common/metrics/metrics_server.h"

#include <exception>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "prometheus/exposer.h"

namespace pc::metrics {

namespace {

// host:port or [v6]:port, with a port number; civetweb wants the same
// spelling.
absl::Status CheckAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", address, "\" is not host:port"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address,
    std::vector<std::shared_ptr<prometheus::Collectable>> collectables) {
  if (absl::Status valid = CheckAddress(address); !valid.ok()) return valid;
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->collectables_ = std::move(collectables);
  try {
    // Two threads: one scrape at a time is the normal case, a second one
    // keeps a stuck client from blocking Prometheus.
    server->exposer_ = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  for (const auto& c : server->collectables_) {
    server->exposer_->RegisterCollectable(c);
  }
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  server->port_ = ports.empty() ? 0 : ports.front();
  return server;
}

MetricsServer::~MetricsServer() {
  // The exposer's threads stop before the collectors go.
  exposer_.reset();
}

std::unique_ptr<MetricsServer> StartMetricsOrLog(
    const std::string& address,
    std::vector<std::shared_ptr<prometheus::Collectable>> collectables) {
  if (address.empty()) return nullptr;
  auto server = MetricsServer::Start(address, std::move(collectables));
  if (!server.ok()) {
    LogLine("metrics_error",
            {{"address", address}, {"error", server.status().ToString()}});
    return nullptr;
  }
  LogLine("metrics_started", {{"address", address},
                              {"port", absl::StrCat((*server)->port())},
                              {"path", "/metrics"}});
  return std::move(*server);
}

}  // namespace pc::metrics
