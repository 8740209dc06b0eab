#include "common/metrics/metrics_server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
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
  // Where a connection reaches it: loopback for a wildcard address.
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  server->wake_host_ = host;
  return server;
}

namespace {

// Opens and closes a TCP connection to host:port (numeric host).
void Poke(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), absl::StrCat(port).c_str(), &hints, &found) !=
      0) {
    return;
  }
  const int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    connect(fd, found->ai_addr, found->ai_addrlen);
    close(fd);
  }
  freeaddrinfo(found);
}

}  // namespace

MetricsServer::~MetricsServer() {
  // The exposer's threads stop before the collectors go. civetweb's accept
  // loop notices a stop only between polls of 2 s, or at a connection: poke
  // it until it is done, so a daemon stops at once.
  std::atomic<bool> done{false};
  std::thread stop([this, &done] {
    exposer_.reset();
    done = true;
  });
  for (int i = 0; i < 100 && !done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!done) Poke(wake_host_, port_);
  }
  stop.join();
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
