#include "aggregator/node_monitor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "aggregator/store.h"
#include "aggregator/test_util.h"
#include "common/kube/fake_api_server.h"
#include "common/pcap/pcap_test_util.h"
#include "common/time_proto.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
namespace ptu = pcap::testutil;
using packetcapture::v1::Capture;

class NodeMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions options;
    options.data_dir = ptu::MakeTempDir();
    options.retention = absl::Hours(1);
    options.clock = [this] { return now_; };
    auto store = Store::Open(options, &registry_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    NodeMonitorOptions monitor_options;
    monitor_options.gone_after = absl::Minutes(5);
    monitor_options.recheck_every = absl::Seconds(30);
    monitor_options.clock = [this] { return now_; };
    monitor_ = std::make_unique<NodeMonitor>(
        store_.get(),
        [this](const std::string& node) -> absl::StatusOr<NodeState> {
          lookups_.push_back(node);
          auto it = nodes_.find(node);
          if (it == nodes_.end()) return absl::UnavailableError("API down");
          return it->second;
        },
        monitor_options);
  }

  // A running capture of `node` with one stored file.
  std::string AddCapture(const std::string& pod, const std::string& node) {
    const std::string id = tu::CaptureId(pod);
    EXPECT_TRUE(store_->PutStatus(node, tu::Status(id, node)).ok());
    EXPECT_TRUE(store_
                    ->Append(node, tu::MakeChunk(id, "run-1-w5/ring0", 0, 0,
                                                 tu::PcapFile(0, 3)))
                    .ok());
    return id;
  }

  absl::Time now_ = absl::FromUnixSeconds(1700000000);
  CaptureRegistry registry_;
  std::unique_ptr<Store> store_;
  std::map<std::string, NodeState> nodes_;  // absent: the API errs
  std::vector<std::string> lookups_;
  std::unique_ptr<NodeMonitor> monitor_;
};

TEST_F(NodeMonitorTest, ANodeGoneWithItsAgentStopsItsCapturesAndEndsFollows) {
  const std::string a = AddCapture("web-a", "node-a");
  const std::string b = AddCapture("web-b", "node-b");
  monitor_->Connected("node-a");
  monitor_->Connected("node-b");
  auto follow = store_->OpenReader(a, /*follow=*/true);
  ASSERT_TRUE(follow.ok());
  std::string out;
  ASSERT_TRUE((*follow)->Read(&out, 1 << 20).ok());
  EXPECT_FALSE((*follow)->Done());

  now_ += absl::Minutes(1);
  monitor_->Disconnected("node-a");
  nodes_["node-a"] = NodeState::kNotReady;
  nodes_["node-b"] = NodeState::kNotReady;
  now_ += absl::Minutes(4);
  EXPECT_TRUE(monitor_->Tick().empty());  // away 4 minutes: not yet
  EXPECT_TRUE(lookups_.empty());
  now_ += absl::Minutes(1);
  EXPECT_EQ(monitor_->Tick(), std::vector<std::string>{"node-a"});
  EXPECT_EQ(lookups_, std::vector<std::string>{"node-a"});  // b is connected

  auto shown = registry_.Get(a);
  ASSERT_TRUE(shown.has_value());
  EXPECT_EQ(shown->state(), Capture::STOPPED);
  EXPECT_FALSE(shown->on_node());
  EXPECT_EQ(shown->message(),
            "node node-a gone: agent disconnected 5m ago and Node NotReady");
  EXPECT_EQ(FromProto(shown->expire_time()), now_ + absl::Hours(1));
  EXPECT_TRUE((*follow)->Done());  // the follow download ends
  EXPECT_EQ(registry_.Get(b)->state(), Capture::RUNNING);

  // Retention then applies.
  now_ += absl::Hours(1);
  EXPECT_EQ(store_->Maintain(), std::vector<std::string>{a});
  // Nothing left to do for node-a.
  lookups_.clear();
  EXPECT_TRUE(monitor_->Tick().empty());
  EXPECT_TRUE(lookups_.empty());
}

TEST_F(NodeMonitorTest, ADeletedNodeCountsAsGone) {
  const std::string a = AddCapture("web-a", "node-a");
  monitor_->Connected("node-a");
  monitor_->Disconnected("node-a");
  nodes_["node-a"] = NodeState::kGone;
  now_ += absl::Minutes(6);
  EXPECT_EQ(monitor_->Tick(), std::vector<std::string>{"node-a"});
  EXPECT_TRUE(
      absl::StrContains(registry_.Get(a)->message(), "and Node deleted"));
}

TEST_F(NodeMonitorTest,
       ReadyNodesAndApiErrorsChangeNothingAndAreRecheckedLater) {
  const std::string a = AddCapture("web-a", "node-a");
  monitor_->Connected("node-a");
  monitor_->Disconnected("node-a");
  now_ += absl::Minutes(10);
  // The API fails: nothing happens this round.
  EXPECT_TRUE(monitor_->Tick().empty());
  EXPECT_EQ(lookups_.size(), 1u);
  // Not looked up again before recheck_every.
  now_ += absl::Seconds(10);
  EXPECT_TRUE(monitor_->Tick().empty());
  EXPECT_EQ(lookups_.size(), 1u);
  // Ready: the agent may just be restarting; still nothing.
  nodes_["node-a"] = NodeState::kReady;
  now_ += absl::Seconds(30);
  EXPECT_TRUE(monitor_->Tick().empty());
  EXPECT_EQ(lookups_.size(), 2u);
  EXPECT_EQ(registry_.Get(a)->state(), Capture::RUNNING);
  // Later NotReady: gone.
  nodes_["node-a"] = NodeState::kNotReady;
  now_ += absl::Seconds(30);
  EXPECT_EQ(monitor_->Tick(), std::vector<std::string>{"node-a"});
  EXPECT_EQ(registry_.Get(a)->state(), Capture::STOPPED);
}

TEST_F(NodeMonitorTest, AnAgentWithAnyStreamOpenIsNotAway) {
  const std::string a = AddCapture("web-a", "node-a");
  nodes_["node-a"] = NodeState::kNotReady;
  // A reconnect opens the new stream before the old one ends.
  monitor_->Connected("node-a");
  monitor_->Connected("node-a");
  monitor_->Disconnected("node-a");
  now_ += absl::Minutes(10);
  EXPECT_TRUE(monitor_->Tick().empty());
  EXPECT_TRUE(lookups_.empty());
  // Away, then back before the check.
  monitor_->Disconnected("node-a");
  now_ += absl::Minutes(10);
  monitor_->Connected("node-a");
  EXPECT_TRUE(monitor_->Tick().empty());
  EXPECT_EQ(registry_.Get(a)->state(), Capture::RUNNING);
}

// After an aggregator restart, a node whose agent never returns is away
// since the monitor started.
TEST_F(NodeMonitorTest, NodesNeverSeenSinceStartAreAwaySinceStart) {
  const std::string a = AddCapture("web-a", "node-a");
  nodes_["node-a"] = NodeState::kNotReady;
  now_ += absl::Minutes(4);
  EXPECT_TRUE(monitor_->Tick().empty());
  now_ += absl::Minutes(1);
  EXPECT_EQ(monitor_->Tick(), std::vector<std::string>{"node-a"});
  EXPECT_EQ(registry_.Get(a)->state(), Capture::STOPPED);
}

TEST(ParseNodeStateTest, ReadsTheReadyCondition) {
  auto state = [](const std::string& json) { return ParseNodeState(json); };
  EXPECT_EQ(*state(R"({"status":{"conditions":[
      {"type":"MemoryPressure","status":"False"},
      {"type":"Ready","status":"True"}]}})"),
            NodeState::kReady);
  EXPECT_EQ(
      *state(
          R"({"status":{"conditions":[{"type":"Ready","status":"False"}]}})"),
      NodeState::kNotReady);
  EXPECT_EQ(
      *state(
          R"({"status":{"conditions":[{"type":"Ready","status":"Unknown"}]}})"),
      NodeState::kNotReady);
  EXPECT_EQ(*state(R"({"metadata":{"name":"n"},"status":{}})"),
            NodeState::kNotReady);
  EXPECT_EQ(*state(R"({"metadata":{"name":"n"}})"), NodeState::kNotReady);
  EXPECT_EQ(state("[1,2]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(state("not json").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LookUpNodeTest, AsksTheApiServerForTheNode) {
  auto server = kube::FakeApiServer::Start([](const kube::FakeRequest& r) {
    kube::FakeResponse response;
    if (r.target == "/api/v1/nodes/ready") {
      response.body =
          R"({"kind":"Node","status":{"conditions":[{"type":"Ready","status":"True"}]}})";
    } else if (r.target == "/api/v1/nodes/broken") {
      response.status = 500;
      response.body = R"({"kind":"Status","message":"etcd down","code":500})";
    } else {
      response.status = 404;
      response.body = R"({"kind":"Status","reason":"NotFound","code":404})";
    }
    return response;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  kube::KubeConfig config;
  config.server = (*server)->url();
  auto client = kube::HttpClient::Create(config);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*LookUpNode(**client, "ready"), NodeState::kReady);
  EXPECT_EQ(*LookUpNode(**client, "deleted"), NodeState::kGone);
  EXPECT_EQ(LookUpNode(**client, "broken").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(LookUpNode(**client, "../pods").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*server)->requests().size(), 3u);
  EXPECT_EQ((*server)->requests()[0].method, "GET");
}

}  // namespace
}  // namespace pc::aggregator
