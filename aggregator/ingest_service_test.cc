#include "aggregator/ingest_service.h"

#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "aggregator/store.h"
#include "aggregator/test_util.h"
#include "common/capture_registry.h"
#include "common/pcap/pcap_test_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;

// Tokens the fake accepts, with the node each is bound to ("" = none).
class FakeAuthenticator : public Authenticator {
 public:
  absl::StatusOr<AgentIdentity> Authenticate(
      const std::string& token) override {
    if (token == "agent-token") return AgentIdentity{"agent", ""};
    if (token == "node-a-token") return AgentIdentity{"agent", "node-a"};
    if (token == "stranger")
      return absl::PermissionDeniedError("not the agent");
    return absl::UnauthenticatedError("bad token");
  }
};

// A store and an ingest server on 127.0.0.1:0 over one data dir.
class Aggregator {
 public:
  explicit Aggregator(const std::string& dir) {
    StoreOptions options;
    options.data_dir = dir;
    store_ = std::move(*Store::Open(options, &registry_));
    IngestOptions ingest;
    ingest.max_chunk_bytes = 64 * 1024;
    service_ =
        std::make_unique<IngestServiceImpl>(store_.get(), &auth_, ingest);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
  }
  ~Aggregator() { server_->Shutdown(); }

  std::unique_ptr<packetcapture::v1::IngestService::Stub> Stub() {
    return packetcapture::v1::IngestService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
  }
  CaptureRegistry& registry() { return registry_; }
  Store& store() { return *store_; }

 private:
  CaptureRegistry registry_;
  FakeAuthenticator auth_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<IngestServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

AgentMessage Hello(const std::string& node, const std::string& token) {
  AgentMessage m;
  m.mutable_hello()->set_node(node);
  m.mutable_hello()->set_token(token);
  m.mutable_hello()->set_agent_instance("test");
  return m;
}

AgentMessage StatusMessage(const packetcapture::v1::Capture& c) {
  AgentMessage m;
  *m.mutable_status() = c;
  return m;
}

AgentMessage ChunkMessage(const packetcapture::v1::Chunk& c) {
  AgentMessage m;
  *m.mutable_chunk() = c;
  return m;
}

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = pcap::testutil::MakeTempDir(); }

  // Sends `messages`, half-closes, and returns every reply and the status.
  std::pair<std::vector<AggregatorMessage>, grpc::Status> Exchange(
      Aggregator& aggregator, const std::vector<AgentMessage>& messages) {
    auto stub = aggregator.Stub();
    grpc::ClientContext context;
    auto stream = stub->Report(&context);
    for (const auto& m : messages) {
      if (!stream->Write(m)) break;
    }
    stream->WritesDone();
    std::vector<AggregatorMessage> replies;
    AggregatorMessage reply;
    while (stream->Read(&reply)) replies.push_back(reply);
    return {replies, stream->Finish()};
  }

  std::string dir_;
  const std::string id_ = tu::CaptureId("web-1");
};

TEST_F(IngestTest, HelloIsRequiredAndTokensAreChecked) {
  Aggregator aggregator(dir_);
  auto [replies, status] =
      Exchange(aggregator, {StatusMessage(tu::Status(id_, "node-a"))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].error().code(), grpc::StatusCode::UNAUTHENTICATED);

  std::tie(replies, status) = Exchange(aggregator, {Hello("node-a", "")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::tie(replies, status) = Exchange(aggregator, {Hello("node-a", "forged")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-a", "stranger")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // The token says node-a: it cannot speak for node-b.
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-b", "node-a-token")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-a", "node-a-token")});
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_TRUE(replies[0].has_welcome());
  EXPECT_EQ(replies[0].welcome().max_chunk_bytes(), 64u * 1024);
  EXPECT_GT(replies[0].welcome().max_inflight_bytes(), 0u);
}

TEST_F(IngestTest, StatusForAnotherNodeIsDenied) {
  Aggregator aggregator(dir_);
  auto [replies, status] =
      Exchange(aggregator, {Hello("node-a", "agent-token"),
                            StatusMessage(tu::Status(id_, "node-b"))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(aggregator.registry().Get(id_).has_value());
}

TEST_F(IngestTest, ChunksAreCheckedStoredAndAcked) {
  Aggregator aggregator(dir_);
  const std::string file = tu::PcapFile(0, 20);
  auto chunk = tu::MakeChunk(id_, "run-1-w5/ring0", 3, 0, file);
  auto [replies, status] =
      Exchange(aggregator, {Hello("node-a", "agent-token"),
                            StatusMessage(tu::Status(id_, "node-a")),
                            ChunkMessage(chunk), ChunkMessage(chunk)});
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[1].ack().offset(), file.size());
  EXPECT_EQ(replies[1].ack().file(), "run-1-w5/ring0");
  EXPECT_EQ(replies[1].ack().file_generation(), 3u);
  // The duplicate is acknowledged at the stored length, not rewritten.
  EXPECT_EQ(replies[2].ack().offset(), file.size());
  EXPECT_EQ(aggregator.registry().Get(id_)->bytes(), file.size());

  auto bad =
      tu::MakeChunk(id_, "run-1-w5/ring0", 3, file.size(), tu::Records(20, 5));
  bad.set_crc32c(bad.crc32c() ^ 1);
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-a", "agent-token"), ChunkMessage(bad)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[1].error().code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(aggregator.registry().Get(id_)->bytes(), file.size());

  // Too large for max_chunk_bytes.
  auto big = tu::MakeChunk(
      id_, "run-1-w5/ring1", 0, 0,
      pcap::testutil::MakePcapFile(pcap::GlobalHeader(), 0, 100, 1000));
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-a", "agent-token"), ChunkMessage(big)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Chunks sent back to back (stored in group commits while they queue up) are
// each acknowledged, in order, at their end; a bad chunk after them loses
// none of them.
TEST_F(IngestTest, ChunksSentBackToBackAreEachAckedInOrder) {
  Aggregator aggregator(dir_);
  std::vector<AgentMessage> messages = {
      Hello("node-a", "agent-token"), StatusMessage(tu::Status(id_, "node-a"))};
  std::vector<std::pair<std::string, uint64_t>> expected;  // file, ack offset
  uint32_t seq = 0;
  for (const std::string file : {"run-1-w5/ring0", "run-1-w5/ring1"}) {
    uint64_t offset = 0;
    for (int i = 0; i < 20; ++i) {
      const std::string data =
          i == 0 ? tu::PcapFile(seq, 3) : tu::Records(seq, 3);
      seq += 3;
      messages.push_back(
          ChunkMessage(tu::MakeChunk(id_, file, 0, offset, data)));
      offset += data.size();
      expected.emplace_back(file, offset);
    }
  }
  auto bad = tu::MakeChunk(id_, "run-1-w5/ring1", 0, expected.back().second,
                           tu::Records(seq, 1));
  bad.set_crc32c(bad.crc32c() ^ 1);
  messages.push_back(ChunkMessage(bad));
  auto [replies, status] = Exchange(aggregator, messages);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  ASSERT_EQ(replies.size(), 1 + expected.size() + 1);  // welcome, acks, error
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(replies[1 + i].ack().file(), expected[i].first) << i;
    EXPECT_EQ(replies[1 + i].ack().offset(), expected[i].second) << i;
  }
  EXPECT_EQ(replies.back().error().code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(aggregator.registry().Get(id_)->packets(), seq);
}

TEST_F(IngestTest, ResumePointsSurviveARestartOnTheSameDataDir) {
  const std::string file = tu::PcapFile(0, 20);
  {
    Aggregator aggregator(dir_);
    auto [replies, status] = Exchange(
        aggregator,
        {Hello("node-a", "agent-token"),
         StatusMessage(tu::Status(id_, "node-a")),
         ChunkMessage(tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, file))});
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  Aggregator aggregator(dir_);
  AgentMessage hello = Hello("node-a", "agent-token");
  hello.mutable_hello()->add_capture_ids(id_);
  auto [replies, status] = Exchange(aggregator, {hello});
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(replies.size(), 1u);
  ASSERT_EQ(replies[0].welcome().resume_size(), 1);
  const auto& point = replies[0].welcome().resume(0);
  EXPECT_EQ(point.capture_id(), id_);
  EXPECT_EQ(point.file(), "run-1-w5/ring0");
  EXPECT_EQ(point.offset(), file.size());
  EXPECT_TRUE(aggregator.registry().Get(id_)->on_node());
  // Another node gets none of node-a's resume points.
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-b", "agent-token")});
  EXPECT_EQ(replies[0].welcome().resume_size(), 0);
  // A hello without the capture: it is gone from the node, kept here.
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-a", "agent-token")});
  auto shown = aggregator.registry().Get(id_);
  EXPECT_FALSE(shown->on_node());
  EXPECT_EQ(shown->state(), packetcapture::v1::Capture::STOPPED);
  EXPECT_TRUE(shown->has_expire_time());
}

}  // namespace
}  // namespace pc::aggregator
