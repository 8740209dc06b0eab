// capture-agent: runs tcpdump for the annotated Pods of one node and serves
// packetcapture.v1.CaptureService for that node.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/capture_registry.h"
#include "common/capture_service.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/metrics/metrics_server.h"
#include "grpcpp/grpcpp.h"
#include "node_agent/agent.h"
#include "node_agent/agent_metrics.h"
#include "node_agent/capture_reader.h"
#include "node_agent/config.h"
#include "node_agent/uplink.h"

ABSL_FLAG(std::string, config, "", "YAML config file (see README)");
ABSL_FLAG(std::string, node_name, "",
          "this node's name; default: $NODE_NAME or the config file");
ABSL_FLAG(std::string, kubeconfig, "",
          "kubeconfig file; default: in-cluster config");
ABSL_FLAG(std::string, capture_dir, "", "where pcap files are written");
ABSL_FLAG(std::string, listen, "", "CaptureService address (host:port)");
ABSL_FLAG(std::string, netns_dir, "",
          "comma-separated directories of network namespace files");
ABSL_FLAG(std::string, aggregator, "",
          "aggregator address (host:port), or several replicas' "
          "(host:port,host:port,...) tried in turn");
ABSL_FLAG(std::string, aggregator_token_file, "",
          "token file for the aggregator (projected ServiceAccount token)");
ABSL_FLAG(absl::Duration, aggregator_ack_timeout, absl::Seconds(15),
          "abandon the aggregator stream (and reconnect with backoff) when "
          "bytes are in flight and no acknowledgement came for this long");
ABSL_FLAG(absl::Duration, aggregator_keepalive_time, absl::Seconds(10),
          "gRPC keepalive ping interval on the aggregator connection");
ABSL_FLAG(absl::Duration, aggregator_keepalive_timeout, absl::Seconds(5),
          "a keepalive ping unanswered for this long closes the connection");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9102",
          "Prometheus /metrics address (host:port), loopback by default: "
          "the agent shares its node's network; empty disables");
ABSL_FLAG(std::string, cluster_name, "",
          "cluster name written into pcapng downloads (empty: none)");

namespace {

using pc::agent::AgentConfig;

int Fail(const std::string& message) {
  std::cerr << "capture-agent: " << message << std::endl;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "capture-agent --node_name=NODE [--config=FILE] [--kubeconfig=FILE]");
  absl::ParseCommandLine(argc, argv);
  // Debian builds Abseil with Mutex deadlock detection on: a lock-order graph
  // updated on every contended lock. Off in the daemon; the tests run with
  // it on (their binaries keep the default).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  pc::StopSignals stop_signals;  // before any thread starts

  AgentConfig config;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    auto loaded = pc::agent::LoadAgentConfig(absl::GetFlag(FLAGS_config));
    if (!loaded.ok()) return Fail(loaded.status().ToString());
    config = *loaded;
  }
  if (const char* env = std::getenv("NODE_NAME"); env && *env) {
    config.node_name = env;
  }
  if (!absl::GetFlag(FLAGS_node_name).empty()) {
    config.node_name = absl::GetFlag(FLAGS_node_name);
  }
  if (!absl::GetFlag(FLAGS_kubeconfig).empty()) {
    config.kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  }
  if (!absl::GetFlag(FLAGS_capture_dir).empty()) {
    config.capture_dir = absl::GetFlag(FLAGS_capture_dir);
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    config.listen = absl::GetFlag(FLAGS_listen);
  }
  if (!absl::GetFlag(FLAGS_netns_dir).empty()) {
    config.netns_dirs =
        absl::StrSplit(absl::GetFlag(FLAGS_netns_dir), ',', absl::SkipEmpty());
  }
  if (!absl::GetFlag(FLAGS_aggregator).empty()) {
    config.aggregator = absl::GetFlag(FLAGS_aggregator);
  }
  if (!absl::GetFlag(FLAGS_aggregator_token_file).empty()) {
    config.aggregator_token_file = absl::GetFlag(FLAGS_aggregator_token_file);
  }

  const absl::Duration ack_timeout =
      absl::GetFlag(FLAGS_aggregator_ack_timeout);
  const absl::Duration keepalive_time =
      absl::GetFlag(FLAGS_aggregator_keepalive_time);
  const absl::Duration keepalive_timeout =
      absl::GetFlag(FLAGS_aggregator_keepalive_timeout);
  if (ack_timeout < absl::Seconds(1) || keepalive_time < absl::Seconds(1) ||
      keepalive_timeout < absl::Seconds(1)) {
    return Fail(
        "--aggregator_ack_timeout, --aggregator_keepalive_time and "
        "--aggregator_keepalive_timeout must be at least 1s");
  }

  // The capture manager's statuses. With an aggregator, the CaptureService
  // shows `served`: the same statuses with the uplink's counters.
  pc::CaptureRegistry registry;
  pc::CaptureRegistry served;
  const bool uplinked = !config.aggregator.empty();
  auto agent = pc::agent::Agent::Create(config, &registry);
  if (!agent.ok()) return Fail(agent.status().ToString());

  const std::string root = config.capture_dir;
  pc::CaptureServiceImpl service(
      uplinked ? &served : &registry,
      [&registry, root](const packetcapture::v1::Capture& capture, bool follow)
          -> absl::StatusOr<std::unique_ptr<pc::PcapSource>> {
        (void)follow;
        const std::string id = capture.id();
        if (capture.files_size() == 0 &&
            capture.state() != packetcapture::v1::Capture::RUNNING) {
          return absl::FailedPreconditionError(absl::StrCat(
              "capture ", id, " has no files (", capture.message(), ")"));
        }
        return std::make_unique<pc::agent::CaptureReader>(
            absl::StrCat(root, "/", id), [&registry, id] {
              auto now = registry.Get(id);
              return now &&
                     (now->state() == packetcapture::v1::Capture::RUNNING ||
                      now->state() == packetcapture::v1::Capture::PENDING);
            });
      },
      // Even if --listen opens a wider address, pcap data goes to loopback
      // peers only.
      pc::IsLoopbackPeer);
  service.SetPcapngInfo(
      pc::PcapngInfo{absl::GetFlag(FLAGS_cluster_name), "capture-agent"});

  // Plaintext: pcap data is served to loopback peers only; reach it with
  // kubectl port-forward (see README).
  auto running = pc::StartServer(config.listen, {&service});
  if (!running.ok()) return Fail(running.status().ToString());
  grpc::Server* server = running->server.get();
  std::unique_ptr<pc::agent::Uplink> uplink;
  if (uplinked) {
    pc::agent::UplinkOptions uplink_options;
    uplink_options.node = config.node_name;
    uplink_options.aggregator = config.aggregator;
    uplink_options.token_file = config.aggregator_token_file;
    uplink_options.capture_dir = config.capture_dir;
    uplink_options.ack_timeout = ack_timeout;
    uplink_options.keepalive_time = keepalive_time;
    uplink_options.keepalive_timeout = keepalive_timeout;
    uplink =
        std::make_unique<pc::agent::Uplink>(uplink_options, &registry, &served);
    // Until the first full list is reconciled the aggregator hears that the
    // inventory is pending, so it marks none of this node's captures gone.
    (*agent)->OnFirstSync([u = uplink.get()] { u->MarkInventorySynced(); });
  }
  auto metrics = std::make_shared<pc::agent::AgentMetrics>(
      &registry, uplink ? std::function<pc::agent::Uplink::Stats()>(
                              [u = uplink.get()] { return u->stats(); })
                        : nullptr);
  auto metrics_server = pc::metrics::StartMetricsOrLog(
      absl::GetFlag(FLAGS_metrics_address), {metrics});
  (*agent)->Start();
  if (uplink) uplink->Start();
  pc::LogLine("agent_started", {{"node", config.node_name},
                                {"listen", config.listen},
                                {"port", absl::StrCat(running->port)},
                                {"capture_dir", config.capture_dir}});

  const int signo = stop_signals.Wait();
  pc::LogLine("agent_stopping", {{"signal", absl::StrCat(signo)}});
  server->GetHealthCheckService()->Shutdown();
  if (uplink) uplink->Stop();
  (*agent)->Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
