#include "aggregator/aggregator_metrics.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "aggregator/object_store.h"
#include "aggregator/store.h"
#include "aggregator/test_replica.h"
#include "aggregator/test_util.h"
#include "common/kube/fake_api_server.h"
#include "common/metrics/exposition_test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "common/s3/memory_object_client.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
using metrics::testutil::Exposition;
using packetcapture::v1::Capture;
using packetcapture::v1::Chunk;

Exposition Scrape(const AggregatorMetrics& m) {
  auto parsed =
      metrics::testutil::ParseExposition(metrics::testutil::ScrapeText(m));
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : Exposition();
}

// Authenticates "good" tokens, rejects others; 500 for "broken".
kube::FakeResponse Api(const kube::FakeRequest& request) {
  kube::FakeResponse response;
  if (absl::StrContains(request.body, "broken")) {
    response.status = 500;
    response.body = "{}";
    return response;
  }
  const bool good = absl::StrContains(request.body, "good");
  response.body = absl::StrCat(
      R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",)",
      R"("status":{"authenticated":)", good ? "true" : "false",
      R"(,"user":{"username":"system:serviceaccount:kube-system:capture-agent",)",
      R"("extra":{"authentication.kubernetes.io/pod-name":["agent-a"],)",
      R"("authentication.kubernetes.io/pod-uid":["uid-a"],)",
      R"("authentication.kubernetes.io/node-name":["node-a"]}},)",
      R"("audiences":["packet-capture-aggregator"]}})");
  return response;
}

TEST(AggregatorMetricsTest, StoreIngestAndTokenReviews) {
  const std::string dir = pcap::testutil::MakeTempDir();
  CaptureRegistry registry;
  StoreOptions options;
  options.data_dir = dir;
  options.max_bytes = 150;  // the stopped capture must go
  auto store = Store::Open(options, &registry);
  ASSERT_TRUE(store.ok()) << store.status();

  const std::string running = tu::CaptureId("web-1");
  const std::string stopped = tu::CaptureId("web-2");
  ASSERT_TRUE(
      (*store)->PutStatus("node-a", tu::Status(running, "node-a")).ok());
  ASSERT_TRUE(
      (*store)
          ->PutStatus("node-a", tu::Status(stopped, "node-a", Capture::STOPPED))
          .ok());
  const std::string head = tu::PcapFile(0, 1);
  const std::string more = tu::Records(1, 2);
  ASSERT_TRUE((*store)
                  ->Append("node-a",
                           tu::MakeChunk(running, "run-1-w5/ring0", 0, 0, head))
                  .ok());
  ASSERT_TRUE((*store)
                  ->Append("node-a", tu::MakeChunk(running, "run-1-w5/ring0", 0,
                                                   head.size(), more))
                  .ok());
  ASSERT_TRUE((*store)
                  ->Append("node-a",
                           tu::MakeChunk(stopped, "run-1-w5/ring0", 0, 0, head))
                  .ok());

  auto api = kube::FakeApiServer::Start(Api);
  ASSERT_TRUE(api.ok());
  kube::KubeConfig config;
  config.server = (*api)->url();
  config.token = "aggregator-token";
  auto http = kube::HttpClient::Create(config);
  ASSERT_TRUE(http.ok()) << http.status();
  TokenReviewAuthenticator auth(std::move(*http), {});
  EXPECT_TRUE(auth.Authenticate("good-token").ok());
  EXPECT_FALSE(auth.Authenticate("bad-token").ok());
  EXPECT_FALSE(auth.Authenticate("broken-token").ok());
  EXPECT_TRUE(auth.Authenticate("good-token").ok());  // cached: no call

  AggregatorMetrics metrics(&registry, store->get(), nullptr, &auth);
  Exposition e = Scrape(metrics);
  const double stored = static_cast<double>(2 * head.size() + more.size());
  EXPECT_EQ(e.Get("packetcapture_aggregator_ingest_chunks_total"), 3);
  EXPECT_EQ(e.Get("packetcapture_aggregator_ingest_bytes_total"), stored);
  // The object store's compaction counters (none in a directory store).
  EXPECT_EQ(e.Get("packetcapture_aggregator_compactions_total"), 0);
  EXPECT_EQ(e.Get("packetcapture_aggregator_compacted_objects_total"), 0);
  EXPECT_EQ(e.Get("packetcapture_aggregator_stored_bytes"), stored);
  EXPECT_EQ(e.Get("packetcapture_aggregator_budget_bytes"), 150);
  EXPECT_EQ(e.Get("packetcapture_aggregator_captures{state=\"running\"}"), 1);
  EXPECT_EQ(e.Get("packetcapture_aggregator_captures{state=\"stopped\"}"), 1);
  EXPECT_EQ(e.types["packetcapture_aggregator_flush_duration_seconds"],
            "histogram");
  // A data and a log flush per append.
  EXPECT_GE(e.Get("packetcapture_aggregator_flush_duration_seconds_count"), 3);
  EXPECT_EQ(e.Get("packetcapture_aggregator_flush_duration_seconds_bucket{le="
                  "\"+Inf\"}"),
            e.Get("packetcapture_aggregator_flush_duration_seconds_count"));
  EXPECT_EQ(e.Get("packetcapture_aggregator_token_reviews_total{result="
                  "\"authenticated\"}"),
            1);
  EXPECT_EQ(
      e.Get(
          "packetcapture_aggregator_token_reviews_total{result=\"rejected\"}"),
      1);
  EXPECT_EQ(
      e.Get("packetcapture_aggregator_token_reviews_total{result=\"failed\"}"),
      1);
  EXPECT_EQ(
      e.Get("packetcapture_aggregator_token_review_duration_seconds_count"), 3);
  EXPECT_EQ(
      e.Get(
          "packetcapture_aggregator_evicted_captures_total{reason=\"budget\"}"),
      0);
  // No ingest service given: no stream series.
  EXPECT_EQ(e.Get("packetcapture_aggregator_agent_streams"), -1);
  // Nor object store requests.
  EXPECT_EQ(e.types.count("packetcapture_aggregator_object_requests_total"),
            0u);

  // Over budget: the stopped capture is evicted.
  (*store)->Maintain();
  e = Scrape(metrics);
  EXPECT_EQ(
      e.Get(
          "packetcapture_aggregator_evicted_captures_total{reason=\"budget\"}"),
      1);
  EXPECT_EQ(e.Get("packetcapture_aggregator_evicted_captures_total{reason="
                  "\"retention\"}"),
            0);
  EXPECT_EQ(e.Get("packetcapture_aggregator_stored_bytes"),
            static_cast<double>(head.size() + more.size()));
  EXPECT_EQ(e.Get("packetcapture_aggregator_captures{state=\"stopped\"}"), 0);
}

// The object store's requests, by operation, as its client counted them.
TEST(AggregatorMetricsTest, ObjectStoreRequests) {
  s3::MemoryObjectClient client;
  tu::FakeLeases leases;
  ObjectStoreOptions options;
  options.client = &client;
  options.prefix = "cluster";
  options.catalog_poll_interval = absl::Hours(1);
  options.catalog_write_interval = absl::Hours(1);
  auto replica = tu::OpenReplica(&leases, "replica-a", std::move(options));
  ASSERT_NE(replica, nullptr);
  const std::string id = tu::CaptureId("web-1");
  ASSERT_TRUE(replica->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(
      replica->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const Chunk chunk =
      tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 1));
  ASSERT_TRUE(replica->store->AppendBatch("node-a", {&chunk}).error.ok());

  AggregatorMetrics metrics(&replica->registry, replica->store.get(), nullptr,
                            nullptr);
  Exposition e = Scrape(metrics);
  EXPECT_EQ(e.types["packetcapture_aggregator_object_requests_total"],
            "counter");
  for (const char* op : {"PUT", "LIST"}) {
    EXPECT_EQ(e.Get(absl::StrCat(
                  "packetcapture_aggregator_object_requests_total{operation=\"",
                  op, "\"}")),
              client.calls(op))
        << op;
  }
  // The entry and the data object.
  EXPECT_GE(client.calls("PUT"), 2);
  // Operations never sent have no series.
  EXPECT_EQ(client.calls("DELETE"), 0);
  EXPECT_EQ(e.Get("packetcapture_aggregator_object_requests_total{operation="
                  "\"DELETE\"}"),
            -1);
}

}  // namespace
}  // namespace pc::aggregator
