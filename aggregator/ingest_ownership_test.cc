// The ingest service's side of node ownership (CaptureStore::AcquireNode):
// an agent whose node another replica owns is told where to go; a stream
// releases what it acquired; a lost node ends its stream.
#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "aggregator/ingest_service.h"
#include "aggregator/store.h"
#include "common/capture_registry.h"
#include "common/pcap/pcap_test_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;

class NodeTokens : public Authenticator {
 public:
  absl::StatusOr<AgentIdentity> Authenticate(
      const std::string& token) override {
    AgentIdentity id;
    id.username = "agent";
    id.node = token;  // the token names its node
    return id;
  }
};

// A real Store whose node ownership the test decides.
class OwnedStore : public CaptureStore {
 public:
  explicit OwnedStore(std::unique_ptr<Store> store)
      : store_(std::move(store)) {}

  absl::Status AcquireNode(const std::string& node,
                           const NodeReport& report) override {
    absl::MutexLock lock(&mu_);
    if (node == "elsewhere") {
      absl::Status held = absl::FailedPreconditionError(
          "node elsewhere is held by replica aggregator-1 at 198.18.0.7:9090");
      held.SetPayload(kRedirectPayload, absl::Cord("198.18.0.7:9090"));
      return held;
    }
    if (absl::StartsWith(node, "silent-")) {
      // The node's Lease holder stopped renewing: wait it out (NodeLeases
      // with wait_for_silent_holder), here until the test says.
      ++waiting_;
      mu_.Unlock();
      silent_expired_.WaitForNotificationWithTimeout(absl::Seconds(30));
      mu_.Lock();
      --waiting_;
    }
    ++held_[node];
    return store_->AcquireNode(node, report);
  }
  int waiting() {
    absl::MutexLock lock(&mu_);
    return waiting_;
  }
  void ExpireSilentHolders() { silent_expired_.Notify(); }
  void ReleaseNode(const std::string& node) override {
    absl::MutexLock lock(&mu_);
    --held_[node];
  }
  void SetOnNodeLost(std::function<void(const std::string&)>) override {}
  int held(const std::string& node) {
    absl::MutexLock lock(&mu_);
    return held_[node];
  }

  absl::Status PutStatus(const std::string& node,
                         const Capture& status) override {
    return store_->PutStatus(node, status);
  }
  void MarkGone(const std::string& node, const std::set<std::string>& present,
                const std::string& reason) override {
    store_->MarkGone(node, present, reason);
  }
  std::set<std::string> NodesWithCaptures() const override {
    return store_->NodesWithCaptures();
  }
  std::vector<packetcapture::v1::ResumePoint> ResumePoints(
      const std::string& node) const override {
    return store_->ResumePoints(node);
  }
  BatchResult AppendBatch(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks) override {
    return store_->AppendBatch(node, chunks);
  }
  std::vector<std::string> Maintain() override { return store_->Maintain(); }
  absl::StatusOr<std::unique_ptr<PcapSource>> OpenReader(const std::string& id,
                                                         bool follow) override {
    return store_->OpenReader(id, follow);
  }
  StoreStats stats() const override { return store_->stats(); }
  metrics::LatencyHistogram::Snapshot flush_latency() const override {
    return store_->flush_latency();
  }
  uint64_t max_bytes() const override { return store_->max_bytes(); }
  uint64_t total_bytes() const override { return store_->total_bytes(); }
  size_t open_files() const override { return store_->open_files(); }

 private:
  std::unique_ptr<Store> store_;
  absl::Mutex mu_;
  std::map<std::string, int> held_ ABSL_GUARDED_BY(mu_);
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification silent_expired_;
};

class IngestOwnershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions options;
    options.data_dir = pcap::testutil::MakeTempDir();
    store_ = std::make_unique<OwnedStore>(
        std::move(*Store::Open(options, &registry_)));
    service_ = std::make_unique<IngestServiceImpl>(store_.get(), &auth_,
                                                   IngestOptions());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = packetcapture::v1::IngestService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_->Shutdown(); }

  static AgentMessage Hello(const std::string& node) {
    AgentMessage m;
    m.mutable_hello()->set_node(node);
    m.mutable_hello()->set_token(node);
    return m;
  }

  static bool WaitFor(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  }

  CaptureRegistry registry_;
  NodeTokens auth_;
  std::unique_ptr<OwnedStore> store_;
  std::unique_ptr<IngestServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<packetcapture::v1::IngestService::Stub> stub_;
  int port_ = 0;
};

TEST_F(IngestOwnershipTest, AnAgentOfANodeOwnedElsewhereIsSentThere) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  auto stream = stub_->Report(&context);
  ASSERT_TRUE(stream->Write(Hello("elsewhere")));
  AggregatorMessage reply;
  while (stream->Read(&reply)) {
    EXPECT_FALSE(reply.has_welcome()) << "welcomed by a replica not owning it";
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("aggregator-1"), std::string::npos)
      << status.error_message();
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kRedirectMetadata);
  ASSERT_NE(it, trailers.end()) << "no redirect in the trailers";
  EXPECT_EQ(std::string(it->second.data(), it->second.size()),
            "198.18.0.7:9090");
}

TEST_F(IngestOwnershipTest, AStreamReleasesTheNodeItAcquired) {
  {
    grpc::ClientContext context;
    auto stream = stub_->Report(&context);
    ASSERT_TRUE(stream->Write(Hello("node-a")));
    AggregatorMessage reply;
    ASSERT_TRUE(stream->Read(&reply));
    ASSERT_TRUE(reply.has_welcome());
    EXPECT_EQ(store_->held("node-a"), 1);
    stream->WritesDone();
    while (stream->Read(&reply)) {
    }
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_TRUE(WaitFor([&] { return store_->held("node-a") == 0; }))
      << "still held " << store_->held("node-a") << " times";
}

TEST_F(IngestOwnershipTest, ALostNodeEndsItsStreamAborted) {
  grpc::ClientContext context;
  auto stream = stub_->Report(&context);
  ASSERT_TRUE(stream->Write(Hello("node-a")));
  AggregatorMessage reply;
  ASSERT_TRUE(stream->Read(&reply));
  ASSERT_TRUE(reply.has_welcome());
  service_->EndStreamOf("node-a",
                        absl::AbortedError("the node's lease was taken over"));
  while (stream->Read(&reply)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_TRUE(WaitFor([&] { return store_->held("node-a") == 0; }));
  // Another node's stream is not touched by it.
  service_->EndStreamOf("node-b", absl::AbortedError("no such stream"));
}

// After a replica dies, the agents of every node it held reach the others,
// which wait each node's Lease out (up to --lease_duration). Those waits must
// not take the threads other nodes' streams need.
TEST_F(IngestOwnershipTest, NodesWaitingOutASilentHolderDoNotHoldUpOthers) {
  const int silent = 2 * IngestOptions().worker_threads;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<
      grpc::ClientReaderWriter<AgentMessage, AggregatorMessage>>>
      streams;
  for (int i = 0; i < silent; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    streams.push_back(stub_->Report(contexts.back().get()));
    ASSERT_TRUE(streams.back()->Write(Hello(absl::StrCat("silent-", i))));
    // One at a time: a peer may have only a few streams awaiting their
    // hello's review.
    ASSERT_TRUE(WaitFor([&] { return store_->waiting() == i + 1; }))
        << "silent-" << i << "'s acquisition queued behind the others'";
  }

  // Another node's agent is welcomed at once.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(3)));
  auto stream = stub_->Report(&context);
  ASSERT_TRUE(stream->Write(Hello("node-a")));
  AggregatorMessage reply;
  const bool read = stream->Read(&reply);
  EXPECT_TRUE(read && reply.has_welcome())
      << "node-a not welcomed while " << store_->waiting()
      << " nodes wait for their Lease";
  context.TryCancel();
  stream->Finish();

  // The Leases run out: every waiting node is welcomed.
  store_->ExpireSilentHolders();
  for (int i = 0; i < silent; ++i) {
    AggregatorMessage welcome;
    EXPECT_TRUE(streams[i]->Read(&welcome) && welcome.has_welcome())
        << "silent-" << i;
    contexts[i]->TryCancel();
    streams[i]->Finish();
  }
}

}  // namespace
}  // namespace pc::aggregator
