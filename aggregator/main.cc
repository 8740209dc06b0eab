// capture-aggregator: agents stream capture status and pcap chunks to it
// (IngestService); it keeps them durably and serves CaptureService for every
// node of the cluster.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "aggregator/aggregator_metrics.h"
#include "aggregator/authenticator.h"
#include "aggregator/ingest_service.h"
#include "aggregator/node_monitor.h"
#include "aggregator/read_authorizer.h"
#include "aggregator/store_factory.h"
#include "common/capture_registry.h"
#include "common/capture_service.h"
#include "common/daemon.h"
#include "common/kube/http_client.h"
#include "common/kube/kube_config.h"
#include "common/log.h"
#include "common/metrics/metrics_server.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:9090",
          "gRPC address for IngestService and CaptureService (host:port); "
          "CaptureService serves callers with a bearer token (per namespace, "
          "by RBAC) and loopback peers (kubectl port-forward)");
ABSL_FLAG(std::string, data_dir, "/data",
          "where captures are stored (the directory store; --store "
          "dir:///PATH says the same)");
ABSL_FLAG(std::string, store, "",
          "where captures are kept: dir:///PATH (one replica, the default: "
          "--data_dir) or s3://BUCKET/PREFIX (an S3-compatible object store "
          "shared by replicas; needs --s3_endpoint and a Kubernetes API for "
          "the node Leases)");
ABSL_FLAG(std::string, s3_endpoint, "",
          "the object store's URL: scheme, host and optional port (e.g. "
          "https://s3.eu-west-1.amazonaws.com, http://minio.storage:9000)");
ABSL_FLAG(std::string, s3_region, "us-east-1", "the object store's region");
ABSL_FLAG(bool, s3_path_style, true,
          "address buckets as ENDPOINT/BUCKET (most S3-compatible servers); "
          "false: BUCKET.ENDPOINT-HOST (virtual-hosted, AWS)");
ABSL_FLAG(std::string, s3_credentials, "",
          "a file of access_key_id=/secret_access_key= lines, or a directory "
          "with one file per key (a mounted Secret); empty: the "
          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment");
ABSL_FLAG(std::string, s3_ca_file, "",
          "PEM CA bundle for an https endpoint (default: the system's)");
ABSL_FLAG(std::string, replica_id, "",
          "this replica's name in the node Leases and its counts board, a "
          "DNS-1123 subdomain (default: $POD_NAME, else the host name)");
ABSL_FLAG(std::string, advertise_address, "",
          "host:port agents and other replicas reach this replica at "
          "(default: $POD_IP and --listen's port)");
ABSL_FLAG(std::string, lease_namespace, "",
          "namespace of the node Leases (default: the service account's)");
ABSL_FLAG(absl::Duration, lease_duration, absl::Seconds(8),
          "a node's Lease not renewed for this long may be taken over by "
          "another replica (renewed every third of it)");
ABSL_FLAG(absl::Duration, catalog_poll_interval, absl::Seconds(2),
          "how often a replica reads what the others changed in the object "
          "store's catalog (bounds how stale its listing is)");
ABSL_FLAG(absl::Duration, catalog_write_interval, absl::Seconds(5),
          "with an s3:// store, how often the holder writes a capture's "
          "byte and packet counts to its catalog entry (status changes go "
          "at once, a new file within a second); each write is a PUT");
ABSL_FLAG(int64_t, compact_below_bytes, 65536,
          "with an s3:// store, a sealed file is rewritten as one object "
          "only while its data objects average fewer bytes than this (a "
          "slow capture's trickle); 0: never");
ABSL_FLAG(int64_t, agent_batch_bytes, -1,
          "agents hold back a growing file's new bytes until this many are "
          "there or --agent_batch_delay passed: fewer, larger chunks (and "
          "objects); -1: 262144 with an s3:// store, 0 (off) with a "
          "directory");
ABSL_FLAG(absl::Duration, agent_batch_delay, absl::Seconds(1),
          "the longest agents hold back new bytes for --agent_batch_bytes "
          "(0 to 10s)");
ABSL_FLAG(std::string, kubeconfig, "",
          "kubeconfig for TokenReview; default: in-cluster config");
ABSL_FLAG(std::string, audience, "packet-capture-aggregator",
          "audience agents' tokens must be minted for");
ABSL_FLAG(std::string, agent_identity,
          "system:serviceaccount:kube-system:capture-agent",
          "the only user allowed to report captures");
ABSL_FLAG(absl::Duration, retention, absl::Hours(24),
          "how long a stopped capture is kept");
ABSL_FLAG(int64_t, max_bytes, int64_t{10} << 30,
          "total byte budget of stored captures (0 = unlimited)");
ABSL_FLAG(int32_t, syncfs_min_files, 4,
          "flush rounds of concurrent streams touching at least this many "
          "files with one syncfs() of the data dir's filesystem (keep the "
          "data dir on its own filesystem); 0 = one fdatasync() per file");
ABSL_FLAG(absl::Duration, sync_delay, absl::Milliseconds(10),
          "how long a flush round may wait for other active agents' chunks "
          "(0 = never); adds at most this to an acknowledgement");
ABSL_FLAG(absl::Duration, token_cache_ttl, absl::Seconds(60),
          "how long a TokenReview answer is reused");
ABSL_FLAG(absl::Duration, node_gone_after, absl::Minutes(5),
          "a node whose agent has been disconnected this long and whose Node "
          "is deleted or NotReady has its captures stopped");
ABSL_FLAG(int32_t, max_open_files, 256,
          "stored files whose descriptors (two each) stay open between "
          "appends");
ABSL_FLAG(absl::Duration, hello_timeout, absl::Seconds(10),
          "an ingest stream without an accepted hello after this is ended");
ABSL_FLAG(int32_t, max_unauthenticated_streams, 32,
          "ingest streams waiting for their hello to be accepted, at most; "
          "more are refused with RESOURCE_EXHAUSTED (agents retry)");
ABSL_FLAG(int32_t, max_unauthenticated_per_peer, 8,
          "the same limit per peer IP address");
ABSL_FLAG(int64_t, max_file_bytes, int64_t{64} << 20,
          "no uploaded chunk may end beyond this offset of its ring file "
          "(tcpdump's files are about 1 MB)");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(30),
          "ping an agent's connection after this long without activity...");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(10),
          "...and drop it when the ping is not answered within this, so a "
          "vanished agent's stream ends in well under a minute");
ABSL_FLAG(absl::Duration, min_agent_ping_interval, absl::Seconds(5),
          "accept agents' keepalive pings this often (agents ping every "
          "10 s); more frequent pings get GOAWAY too_many_pings");
ABSL_FLAG(absl::Duration, read_cache_ttl, absl::Seconds(10),
          "how long a reader's TokenReview and SubjectAccessReview answers "
          "are reused");
ABSL_FLAG(std::string, read_audience, "",
          "an audience readers' tokens may be minted for besides the API "
          "server's own (kubectl create token SA --audience=...); empty: the "
          "API server's only");
ABSL_FLAG(std::string, cluster_name, "",
          "cluster name written into pcapng downloads (empty: none)");

ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9103",
          "Prometheus /metrics address (host:port; counts and latencies, no "
          "pcap data); empty disables");

namespace {

int Fail(const std::string& message) {
  std::cerr << "capture-aggregator: " << message << std::endl;
  return 2;
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

// The port of a host:port listen address ("" if none).
std::string PortOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? "" : address.substr(colon + 1);
}

std::string ServiceAccountNamespace() {
  std::ifstream in(absl::StrCat(pc::kube::kServiceAccountDir, "/namespace"));
  std::string ns;
  std::getline(in, ns);
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "capture-aggregator [--data_dir=DIR | --store=dir:///DIR | "
      "--store=s3://BUCKET/PREFIX --s3_endpoint=URL] [--listen=HOST:PORT] "
      "[--kubeconfig=FILE]");
  absl::ParseCommandLine(argc, argv);
  // Debian builds Abseil with Mutex deadlock detection on: a lock-order graph
  // updated on every contended lock, a few percent of the aggregator's CPU
  // under load. The tests run with it on (their binaries keep the default).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  pc::StopSignals stop_signals;  // before any thread starts
  // Stored files, agent streams and downloads all hold descriptors.
  if (auto limit = pc::RaiseOpenFileLimit(); limit.ok()) {
    pc::LogLine("open_file_limit", {{"before", absl::StrCat(limit->before)},
                                    {"after", absl::StrCat(limit->after)}});
  } else {
    pc::LogLine("open_file_limit_error",
                {{"error", limit.status().ToString()}});
  }

  if (absl::GetFlag(FLAGS_retention) <= absl::ZeroDuration()) {
    return Fail("--retention must be positive");
  }
  if (absl::GetFlag(FLAGS_max_bytes) < 0)
    return Fail("--max_bytes must not be negative");
  if (absl::GetFlag(FLAGS_syncfs_min_files) < 0) {
    return Fail("--syncfs_min_files must be >= 0");
  }
  if (absl::GetFlag(FLAGS_sync_delay) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_sync_delay) > absl::Seconds(1)) {
    return Fail("--sync_delay must be between 0 and 1s");
  }
  if (absl::GetFlag(FLAGS_node_gone_after) <= absl::ZeroDuration()) {
    return Fail("--node_gone_after must be positive");
  }
  if (absl::GetFlag(FLAGS_max_open_files) < 1) {
    return Fail("--max_open_files must be at least 1");
  }
  if (absl::GetFlag(FLAGS_token_cache_ttl) < absl::ZeroDuration()) {
    return Fail("--token_cache_ttl must not be negative");
  }
  if (absl::GetFlag(FLAGS_hello_timeout) <= absl::ZeroDuration()) {
    return Fail("--hello_timeout must be positive");
  }
  if (absl::GetFlag(FLAGS_max_unauthenticated_streams) < 1 ||
      absl::GetFlag(FLAGS_max_unauthenticated_per_peer) < 1) {
    return Fail(
        "--max_unauthenticated_streams and --max_unauthenticated_per_peer "
        "must be at least 1");
  }
  if (absl::GetFlag(FLAGS_max_file_bytes) < (int64_t{1} << 20)) {
    return Fail("--max_file_bytes must be at least 1 MiB");
  }
  if (absl::GetFlag(FLAGS_keepalive_time) < absl::Seconds(1) ||
      absl::GetFlag(FLAGS_keepalive_timeout) < absl::Seconds(1) ||
      absl::GetFlag(FLAGS_min_agent_ping_interval) < absl::ZeroDuration()) {
    return Fail(
        "--keepalive_time and --keepalive_timeout must be at least 1s, "
        "--min_agent_ping_interval not negative");
  }
  if (absl::GetFlag(FLAGS_read_cache_ttl) < absl::ZeroDuration()) {
    return Fail("--read_cache_ttl must not be negative");
  }
  if (absl::GetFlag(FLAGS_audience).empty() ||
      absl::GetFlag(FLAGS_agent_identity).empty()) {
    return Fail("--audience and --agent_identity must not be empty");
  }

  absl::StatusOr<pc::kube::KubeConfig> kube_config =
      absl::GetFlag(FLAGS_kubeconfig).empty()
          ? pc::kube::InClusterConfig()
          : pc::kube::LoadKubeconfig(absl::GetFlag(FLAGS_kubeconfig));
  if (!kube_config.ok()) return Fail(kube_config.status().ToString());
  // A hello waits for these calls: a slow API server ends it by the hello
  // deadline anyway.
  pc::kube::HttpClient::Options http_options;
  http_options.request_timeout = absl::Seconds(10);
  // As many connections as hellos may wait for a review at once: a burst of
  // reconnecting agents would otherwise open (TLS) and close the rest.
  http_options.max_idle_connections =
      absl::GetFlag(FLAGS_max_unauthenticated_streams);
  auto http = pc::kube::HttpClient::Create(*kube_config, http_options);
  if (!http.ok()) return Fail(http.status().ToString());
  pc::kube::HttpClient::Options node_http_options;
  node_http_options.request_timeout = absl::Seconds(10);  // maintenance waits
  auto node_http =
      pc::kube::HttpClient::Create(*kube_config, node_http_options);
  if (!node_http.ok()) return Fail(node_http.status().ToString());
  pc::aggregator::TokenReviewAuthenticator::Options auth_options;
  auth_options.audience = absl::GetFlag(FLAGS_audience);
  auth_options.agent_identity = absl::GetFlag(FLAGS_agent_identity);
  auth_options.cache_ttl = absl::GetFlag(FLAGS_token_cache_ttl);
  pc::aggregator::TokenReviewAuthenticator authenticator(std::move(*http),
                                                         auth_options);

  // Readers: TokenReview + SubjectAccessReview per namespace.
  auto read_http = pc::kube::HttpClient::Create(*kube_config);
  if (!read_http.ok()) return Fail(read_http.status().ToString());
  pc::aggregator::ApiReadAuthorizer::Options read_options;
  read_options.extra_audience = absl::GetFlag(FLAGS_read_audience);
  read_options.cache_ttl = absl::GetFlag(FLAGS_read_cache_ttl);
  pc::aggregator::ApiReadAuthorizer read_authorizer(std::move(*read_http),
                                                    read_options);

  pc::CaptureRegistry registry;
  pc::aggregator::StoreConfig store_config;
  pc::aggregator::StoreOptions& store_options = store_config.dir;
  store_config.url = absl::GetFlag(FLAGS_store).empty()
                         ? absl::StrCat("dir://", absl::GetFlag(FLAGS_data_dir))
                         : absl::GetFlag(FLAGS_store);
  store_options.retention = absl::GetFlag(FLAGS_retention);
  // Listings (ListCaptures, GetCapture, WatchCaptures) take a capture's
  // acknowledged chunks at most every 100 ms, not per commit (store.h).
  store_options.listing_interval = absl::Milliseconds(100);
  store_options.max_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_bytes));
  pc::aggregator::IngestOptions ingest_options;
  store_options.max_open_files = absl::GetFlag(FLAGS_max_open_files);
  ingest_options.hello_timeout = absl::GetFlag(FLAGS_hello_timeout);
  ingest_options.max_unauthenticated_streams =
      absl::GetFlag(FLAGS_max_unauthenticated_streams);
  ingest_options.max_unauthenticated_per_peer =
      absl::GetFlag(FLAGS_max_unauthenticated_per_peer);
  ingest_options.max_token_bytes = auth_options.max_token_bytes;
  ingest_options.max_file_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_file_bytes));
  ingest_options.keepalive.time = absl::GetFlag(FLAGS_keepalive_time);
  ingest_options.keepalive.timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  ingest_options.keepalive.min_agent_ping_interval =
      absl::GetFlag(FLAGS_min_agent_ping_interval);
  store_options.sync.min_files_for_fs = absl::GetFlag(FLAGS_syncfs_min_files);
  store_options.sync.max_delay = absl::GetFlag(FLAGS_sync_delay);
  // At most one waiting request per ingest worker thread.
  store_options.sync.max_round = ingest_options.worker_threads;
  // Replicas over an object store: the node Leases and the S3 client.
  store_config.s3.endpoint = absl::GetFlag(FLAGS_s3_endpoint);
  store_config.s3.region = absl::GetFlag(FLAGS_s3_region);
  store_config.s3.path_style = absl::GetFlag(FLAGS_s3_path_style);
  store_config.s3.ca_file = absl::GetFlag(FLAGS_s3_ca_file);
  store_config.s3_credentials = absl::GetFlag(FLAGS_s3_credentials);
  store_config.max_file_bytes = ingest_options.max_file_bytes;
  store_config.catalog_poll_interval =
      absl::GetFlag(FLAGS_catalog_poll_interval);
  store_config.catalog_write_interval =
      absl::GetFlag(FLAGS_catalog_write_interval);
  if (absl::GetFlag(FLAGS_compact_below_bytes) < 0 ||
      absl::GetFlag(FLAGS_compact_below_bytes) > int64_t{64} << 20) {
    return Fail("--compact_below_bytes must be 0 to 67108864");
  }
  store_config.compact_below_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_compact_below_bytes));
  store_config.lease.identity = absl::GetFlag(FLAGS_replica_id).empty()
                                    ? EnvOr("POD_NAME", HostName())
                                    : absl::GetFlag(FLAGS_replica_id);
  store_config.lease.address =
      absl::GetFlag(FLAGS_advertise_address).empty()
          ? (EnvOr("POD_IP", "").empty()
                 ? ""
                 : absl::StrCat(EnvOr("POD_IP", ""), ":",
                                PortOf(absl::GetFlag(FLAGS_listen))))
          : absl::GetFlag(FLAGS_advertise_address);
  store_config.lease.namespace_name =
      absl::GetFlag(FLAGS_lease_namespace).empty()
          ? ServiceAccountNamespace()
          : absl::GetFlag(FLAGS_lease_namespace);
  store_config.lease.lease_duration = absl::GetFlag(FLAGS_lease_duration);
  const int64_t batch_bytes = absl::GetFlag(FLAGS_agent_batch_bytes);
  const absl::Duration batch_delay = absl::GetFlag(FLAGS_agent_batch_delay);
  if (batch_bytes < -1 || batch_bytes > int64_t{1} << 20) {
    return Fail("--agent_batch_bytes must be -1 (by store) or 0 to 1048576");
  }
  if (batch_delay < absl::ZeroDuration() || batch_delay > absl::Seconds(10)) {
    return Fail("--agent_batch_delay must be 0 to 10s");
  }
  ingest_options.agent_batch_bytes = static_cast<uint32_t>(
      batch_bytes >= 0                                     ? batch_bytes
      : pc::aggregator::IsObjectStoreUrl(store_config.url) ? 256 << 10
                                                           : 0);
  ingest_options.agent_batch_delay = batch_delay;
  if (store_config.lease.lease_duration < absl::Seconds(2)) {
    return Fail("--lease_duration must be at least 2s");
  }
  if (store_config.catalog_poll_interval < absl::Milliseconds(100)) {
    return Fail("--catalog_poll_interval must be at least 100ms");
  }
  if (store_config.catalog_write_interval < absl::Milliseconds(100) ||
      store_config.catalog_write_interval > absl::Minutes(10)) {
    return Fail("--catalog_write_interval must be 100ms to 10m");
  }
  // A renewal must finish well within the lease.
  pc::kube::HttpClient::Options lease_http_options;
  lease_http_options.request_timeout = store_config.lease.lease_duration / 4;
  // Every hello of a burst takes its node's Lease, every stream's end
  // releases it.
  lease_http_options.max_idle_connections =
      absl::GetFlag(FLAGS_max_unauthenticated_streams);
  auto lease_http =
      pc::kube::HttpClient::Create(*kube_config, lease_http_options);
  if (!lease_http.ok()) return Fail(lease_http.status().ToString());
  store_config.lease_http = lease_http->get();
  auto opened =
      pc::aggregator::OpenCaptureStore(std::move(store_config), &registry);
  if (!opened.ok()) return Fail(opened.status().ToString());
  pc::aggregator::CaptureStore* store_ptr = opened->store.get();

  pc::aggregator::NodeMonitorOptions monitor_options;
  monitor_options.gone_after = absl::GetFlag(FLAGS_node_gone_after);
  pc::aggregator::NodeMonitor node_monitor(
      store_ptr,
      [client = node_http->get()](const std::string& node) {
        return pc::aggregator::LookUpNode(*client, node);
      },
      monitor_options);
  ingest_options.on_agent_connected = [&](const std::string& node) {
    node_monitor.Connected(node);
  };
  ingest_options.on_agent_disconnected = [&](const std::string& node) {
    node_monitor.Disconnected(node);
  };

  pc::aggregator::IngestServiceImpl ingest(store_ptr, &authenticator,
                                           ingest_options);
  store_ptr->SetOnNodeLost([&ingest](const std::string& node) {
    ingest.EndStreamOf(node,
                       absl::AbortedError(absl::StrCat(
                           "this replica lost node ", node,
                           "'s Lease; reconnect to the replica holding it")));
  });
  // Agents reach IngestService over the network (token-authenticated).
  // CaptureService serves pcap data: to callers with a bearer token, the
  // namespaces RBAC lets them read; without a token, to loopback peers only
  // (kubectl port-forward, which the API server authorizes).
  pc::CaptureServiceImpl query(
      &registry,
      [store_ptr](const packetcapture::v1::Capture& capture, bool follow) {
        return store_ptr->OpenReader(capture.id(), follow);
      },
      pc::IsLoopbackPeer, &read_authorizer);
  query.SetPcapngInfo(
      pc::PcapngInfo{absl::GetFlag(FLAGS_cluster_name), "capture-aggregator"});

  // The ingest server's receive limit (a chunk and its fields; what a
  // stranger's hello can cost) and keepalive apply to CaptureService's
  // small requests too.
  auto running = pc::StartServer(
      absl::GetFlag(FLAGS_listen), {&ingest, &query},
      pc::aggregator::IngestMaxReceiveMessageBytes(ingest_options),
      [&ingest_options](grpc::ServerBuilder* builder) {
        pc::aggregator::ConfigureIngestServer(ingest_options, builder);
      });
  if (!running.ok()) return Fail(running.status().ToString());
  grpc::Server* server = running->server.get();
  pc::LogLine("aggregator_started",
              {{"listen", absl::GetFlag(FLAGS_listen)},
               {"port", absl::StrCat(running->port)},
               {"store", opened->location},
               {"captures", absl::StrCat(registry.List().size())},
               {"bytes", absl::StrCat(store_ptr->total_bytes())}});

  auto metrics = std::make_shared<pc::aggregator::AggregatorMetrics>(
      &registry, store_ptr, &ingest, &authenticator);
  auto metrics_server = pc::metrics::StartMetricsOrLog(
      absl::GetFlag(FLAGS_metrics_address), {metrics});

  // Gone nodes, retention and the byte budget, every few seconds.
  absl::Notification stop;
  std::thread maintenance([&] {
    do {
      node_monitor.Tick();
      store_ptr->Maintain();
    } while (!stop.WaitForNotificationWithTimeout(absl::Seconds(5)));
  });

  const int signo = stop_signals.Wait();
  pc::LogLine("aggregator_stopping", {{"signal", absl::StrCat(signo)}});
  server->GetHealthCheckService()->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  stop.Notify();
  maintenance.join();
  return 0;
}
