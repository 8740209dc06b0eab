#include "node_agent/agent_metrics.h"

#include <string>

#include "common/metrics/exposition_test_util.h"
#include "gtest/gtest.h"

namespace pc::agent {
namespace {

using CaptureProto = packetcapture::v1::Capture;
using metrics::testutil::Exposition;

Exposition Scrape(const AgentMetrics& m) {
  auto parsed =
      metrics::testutil::ParseExposition(metrics::testutil::ScrapeText(m));
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : Exposition();
}

CaptureProto Status(const std::string& id, const std::string& pod,
                    CaptureProto::State state) {
  CaptureProto c;
  c.set_id(id);
  c.set_node("node-a");
  c.set_namespace_("default");
  c.set_pod(pod);
  c.set_state(state);
  return c;
}

void SetFile(CaptureProto* c, const std::string& name, uint64_t generation,
             uint64_t size, uint64_t packets) {
  packetcapture::v1::CaptureFile* file = nullptr;
  for (auto& f : *c->mutable_files()) {
    if (f.name() == name) file = &f;
  }
  if (file == nullptr) {
    file = c->add_files();
    file->set_name(name);
  }
  file->set_generation(generation);
  file->set_size(size);
  file->set_packets(packets);
}

constexpr char kWeb[] = "{namespace=\"default\",pod=\"web\"}";

TEST(AgentMetricsTest, CapturesByStateAndCountersAcrossRingReuse) {
  CaptureRegistry registry;
  CaptureProto web = Status("web-1", "web", CaptureProto::RUNNING);
  SetFile(&web, "run-1-w2/ring0", 0, 1000, 10);
  web.set_dropped_packets(2);
  registry.Put(web);
  registry.Put(Status("bad-1", "bad", CaptureProto::FAILED));
  AgentMetrics metrics(&registry, nullptr);

  Exposition e = Scrape(metrics);
  EXPECT_EQ(e.Get("packetcapture_agent_captures{state=\"running\"}"), 1);
  EXPECT_EQ(e.Get("packetcapture_agent_captures{state=\"failed\"}"), 1);
  EXPECT_EQ(e.Get("packetcapture_agent_captures{state=\"pending\"}"), 0);
  EXPECT_EQ(e.Get("packetcapture_agent_captures{state=\"stopped\"}"), 0);
  EXPECT_EQ(e.types["packetcapture_agent_captured_bytes_total"], "counter");
  EXPECT_EQ(e.Get("packetcapture_agent_captured_bytes_total"), 1000);
  EXPECT_EQ(e.Get("packetcapture_agent_captured_packets_total"), 10);
  EXPECT_EQ(e.Get("packetcapture_agent_kernel_dropped_packets_total"), 2);
  EXPECT_EQ(e.Get("packetcapture_agent_stored_bytes"), 1000);
  EXPECT_EQ(
      e.Get(std::string("packetcapture_agent_pod_captured_bytes_total") + kWeb),
      1000);
  // No uplink: no uplink series.
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_lag_bytes"), -1);

  // The active file grows, the next one starts, tcpdump restarted once.
  SetFile(&web, "run-1-w2/ring0", 0, 3000, 30);
  SetFile(&web, "run-1-w2/ring1", 0, 500, 5);
  web.set_restarts(1);
  registry.Put(web);
  e = Scrape(metrics);
  EXPECT_EQ(e.Get("packetcapture_agent_captured_bytes_total"), 3500);
  EXPECT_EQ(e.Get("packetcapture_agent_captured_packets_total"), 35);
  EXPECT_EQ(e.Get("packetcapture_agent_tcpdump_restarts_total"), 1);

  // ring0 reused: its old content reached the rotation size first.
  SetFile(&web, "run-1-w2/ring0", 1, 200, 2);
  registry.Put(web);
  e = Scrape(metrics);
  EXPECT_EQ(e.Get("packetcapture_agent_captured_bytes_total"),
            3500 + (1000000 - 3000) + 200);
  EXPECT_EQ(e.Get("packetcapture_agent_captured_packets_total"), 37);
  EXPECT_EQ(e.Get("packetcapture_agent_stored_bytes"), 700);

  // A lower drop count (a new run's report) never lowers the counter.
  web.set_dropped_packets(1);
  registry.Put(web);
  e = Scrape(metrics);
  EXPECT_EQ(e.Get("packetcapture_agent_kernel_dropped_packets_total"), 2);

  // The capture ends: node counters keep their totals, its Pod's series go.
  registry.Remove("web-1");
  e = Scrape(metrics);
  EXPECT_EQ(e.Get("packetcapture_agent_captured_bytes_total"),
            3500 + (1000000 - 3000) + 200);
  EXPECT_EQ(e.Get("packetcapture_agent_captures{state=\"running\"}"), 0);
  EXPECT_EQ(
      e.Get(std::string("packetcapture_agent_pod_captured_bytes_total") + kWeb),
      -1);
}

TEST(AgentMetricsTest, UplinkCounters) {
  CaptureRegistry registry;
  Uplink::Stats stats;
  stats.connects = 3;
  stats.disconnects = 2;
  stats.bytes_sent = 5000;
  stats.bytes_acked = 4000;
  stats.chunks_sent = 7;
  stats.lag_bytes = 1234;
  stats.bytes_lost = 99;
  stats.ack_timeouts = 1;
  AgentMetrics metrics(&registry, [&stats] { return stats; });
  Exposition e = Scrape(metrics);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_connected"), 1);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_connects_total"), 3);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_disconnects_total"), 2);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_sent_bytes_total"), 5000);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_acked_bytes_total"), 4000);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_chunks_total"), 7);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_lag_bytes"), 1234);
  EXPECT_EQ(e.types["packetcapture_agent_uplink_lag_bytes"], "gauge");
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_lost_bytes_total"), 99);
  EXPECT_EQ(e.Get("packetcapture_agent_uplink_ack_timeouts_total"), 1);
  stats.disconnects = 3;
  EXPECT_EQ(Scrape(metrics).Get("packetcapture_agent_uplink_connected"), 0);
}

}  // namespace
}  // namespace pc::agent
