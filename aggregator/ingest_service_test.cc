#include "aggregator/ingest_service.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/store.h"
#include "aggregator/test_util.h"
#include "common/capture_registry.h"
#include "common/pcap/pcap_test_util.h"
#include "common/pcap/ring_reader.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;
using packetcapture::v1::ResumePoint;

// Tokens the fake accepts, each bound to a node; counts the checks.
class FakeAuthenticator : public Authenticator {
 public:
  absl::StatusOr<AgentIdentity> Authenticate(
      const std::string& token) override {
    ++calls;
    if (token == "node-a-token") return Identity("node-a");
    if (token == "slow-node-a-token") {  // an API server taking its time
      absl::SleepFor(absl::Milliseconds(1500));
      return Identity("node-a");
    }
    if (token == "node-b-token") return Identity("node-b");
    // An identity without a node: the service must not take the hello's
    // word for it.
    if (token == "unbound") return Identity("");
    if (token == "stranger")
      return absl::PermissionDeniedError("not the agent");
    return absl::UnauthenticatedError("bad token");
  }
  std::atomic<int> calls{0};

 private:
  static AgentIdentity Identity(const std::string& node) {
    AgentIdentity id;
    id.username = "agent";
    id.node = node;
    return id;
  }
};

// A store and an ingest server on 127.0.0.1:0 over one data dir.
class Aggregator {
 public:
  explicit Aggregator(const std::string& dir,
                      std::function<void(IngestOptions*)> tune = nullptr) {
    StoreOptions options;
    options.data_dir = dir;
    store_ = std::move(*Store::Open(options, &registry_));
    IngestOptions ingest;
    ingest.max_chunk_bytes = 64 * 1024;
    if (tune) tune(&ingest);
    service_ =
        std::make_unique<IngestServiceImpl>(store_.get(), &auth_, ingest);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service_.get());
    ConfigureIngestServer(ingest, &builder);
    server_ = builder.BuildAndStart();
  }
  ~Aggregator() { server_->Shutdown(); }

  std::unique_ptr<packetcapture::v1::IngestService::Stub> Stub(
      const grpc::ChannelArguments& args = grpc::ChannelArguments()) {
    return packetcapture::v1::IngestService::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_),
                                  grpc::InsecureChannelCredentials(), args));
  }
  CaptureRegistry& registry() { return registry_; }
  Store& store() { return *store_; }
  IngestServiceImpl& service() { return *service_; }
  FakeAuthenticator& auth() { return auth_; }

 private:
  CaptureRegistry registry_;
  FakeAuthenticator auth_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<IngestServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// One Report stream driven step by step, with its own channel.
class Session {
 public:
  explicit Session(
      Aggregator& aggregator, absl::Duration deadline = absl::Seconds(20),
      const grpc::ChannelArguments& args = grpc::ChannelArguments())
      : stub_(aggregator.Stub(args)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    stream_ = stub_->Report(&context_);
  }
  bool Write(const AgentMessage& m) { return stream_->Write(m); }
  std::optional<AggregatorMessage> Read() {
    AggregatorMessage m;
    if (!stream_->Read(&m)) return std::nullopt;
    return m;
  }
  // Half-closes, reads what is left and returns the stream's status.
  grpc::Status Close(std::vector<AggregatorMessage>* rest = nullptr) {
    stream_->WritesDone();
    return Drain(rest);
  }
  // Reads until the server ends the stream.
  grpc::Status Drain(std::vector<AggregatorMessage>* rest = nullptr) {
    AggregatorMessage m;
    while (stream_->Read(&m)) {
      if (rest != nullptr) rest->push_back(m);
    }
    return stream_->Finish();
  }

 private:
  std::unique_ptr<packetcapture::v1::IngestService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<AgentMessage, AggregatorMessage>>
      stream_;
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

bool WaitFor(const std::function<bool()>& done,
             absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = pcap::testutil::MakeTempDir(); }

  // Sends `messages`, half-closes, and returns every reply and the status.
  std::pair<std::vector<AggregatorMessage>, grpc::Status> Exchange(
      Aggregator& aggregator, const std::vector<AgentMessage>& messages) {
    auto stub = aggregator.Stub();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
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

// An identity that names no node must not let the hello choose one.
TEST_F(IngestTest, AnIdentityWithoutANodeIsRefused) {
  Aggregator aggregator(dir_);
  auto [replies, status] = Exchange(aggregator, {Hello("node-a", "unbound")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << status.error_message();
  ASSERT_FALSE(replies.empty());
  EXPECT_FALSE(replies[0].has_welcome());
}

TEST_F(IngestTest, OversizedHellosAreRefusedBeforeAnyReview) {
  Aggregator aggregator(dir_);
  auto [replies, status] =
      Exchange(aggregator, {Hello("node-a", std::string(8193, 'x'))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "8193"))
      << status.error_message();
  // Larger than any chunk: gRPC refuses it before the service sees it.
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-a", std::string(2 << 20, 'x'))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_EQ(aggregator.auth().calls.load(), 0);
}

TEST_F(IngestTest, AHelloMustComeInTime) {
  Aggregator aggregator(dir_, [](IngestOptions* o) {
    o->hello_timeout = absl::Milliseconds(300);
  });
  const absl::Time start = absl::Now();
  Session silent(aggregator, absl::Seconds(10));
  auto reply = silent.Read();
  ASSERT_TRUE(reply.has_value()) << "stream ended without an IngestError";
  EXPECT_EQ(reply->error().code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(absl::StrContains(reply->error().message(), "hello"))
      << reply->error().message();
  EXPECT_EQ(silent.Drain().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(
      WaitFor([&] { return aggregator.service().active_streams() == 0; }));

  // A stream that said hello in time is not affected.
  Session agent(aggregator, absl::Seconds(10));
  ASSERT_TRUE(agent.Write(Hello("node-a", "node-a-token")));
  ASSERT_TRUE(agent.Read().has_value());
  absl::SleepFor(absl::Milliseconds(600));
  ASSERT_TRUE(agent.Write(StatusMessage(tu::Status(id_, "node-a"))));
  ASSERT_TRUE(agent.Write(ChunkMessage(
      tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 3)))));
  auto ack = agent.Read();
  ASSERT_TRUE(ack.has_value());
  EXPECT_TRUE(ack->has_ack());
  EXPECT_TRUE(agent.Close().ok());
}

// The deadline ends a stream also while its token review still blocks; the
// late answer then neither welcomes it nor displaces the node's stream.
TEST_F(IngestTest, TheHelloDeadlineHoldsWhileTheReviewIsSlow) {
  Aggregator aggregator(dir_, [](IngestOptions* o) {
    o->hello_timeout = absl::Milliseconds(300);
  });
  Session agent(aggregator, absl::Seconds(10));
  ASSERT_TRUE(agent.Write(Hello("node-a", "node-a-token")));
  ASSERT_TRUE(agent.Read().has_value());

  const absl::Time start = absl::Now();
  Session slow(aggregator, absl::Seconds(10));
  ASSERT_TRUE(slow.Write(Hello("node-a", "slow-node-a-token")));
  std::vector<AggregatorMessage> replies;
  EXPECT_EQ(slow.Close(&replies).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1200));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].error().code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  absl::SleepFor(absl::Milliseconds(1500));  // the review has returned
  ASSERT_TRUE(agent.Write(StatusMessage(tu::Status(id_, "node-a"))));
  ASSERT_TRUE(agent.Write(ChunkMessage(
      tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 3)))));
  auto ack = agent.Read();
  ASSERT_TRUE(ack.has_value()) << "the node's stream was displaced";
  EXPECT_TRUE(ack->has_ack());
  EXPECT_TRUE(agent.Close().ok());
}

// Streams that have not authenticated yet are limited per peer address and
// in total; the one over the limit is refused at once.
void ExpectUnauthenticatedLimit(Aggregator& aggregator) {
  Session first(aggregator), second(aggregator);
  ASSERT_TRUE(WaitFor([&] {
    return aggregator.service().unauthenticated_streams() == 2;
  })) << aggregator.service().unauthenticated_streams();
  {
    Session third(aggregator, absl::Seconds(5));
    std::vector<AggregatorMessage> replies;
    grpc::Status status = third.Drain(&replies);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].error().code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // An accepted hello frees its slot.
  ASSERT_TRUE(first.Write(Hello("node-a", "node-a-token")));
  ASSERT_TRUE(first.Read().has_value());
  ASSERT_TRUE(WaitFor(
      [&] { return aggregator.service().unauthenticated_streams() == 1; }));
  Session fourth(aggregator);
  ASSERT_TRUE(fourth.Write(Hello("node-b", "node-b-token")));
  auto welcome = fourth.Read();
  ASSERT_TRUE(welcome.has_value());
  EXPECT_TRUE(welcome->has_welcome());
  EXPECT_TRUE(first.Close().ok());
  EXPECT_TRUE(fourth.Close().ok());
  ASSERT_TRUE(second.Write(Hello("node-c", "forged")));
  EXPECT_EQ(second.Close().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(WaitFor(
      [&] { return aggregator.service().unauthenticated_streams() == 0; }));
}

TEST_F(IngestTest, UnauthenticatedStreamsAreLimitedPerPeer) {
  Aggregator aggregator(dir_, [](IngestOptions* o) {
    o->max_unauthenticated_per_peer = 2;
    o->max_unauthenticated_streams = 10;
  });
  ExpectUnauthenticatedLimit(aggregator);
}

TEST_F(IngestTest, UnauthenticatedStreamsAreLimitedInTotal) {
  Aggregator aggregator(dir_, [](IngestOptions* o) {
    o->max_unauthenticated_per_peer = 10;
    o->max_unauthenticated_streams = 2;
  });
  ExpectUnauthenticatedLimit(aggregator);
}

TEST_F(IngestTest, ANewStreamReplacesTheNodesOldOne) {
  Aggregator aggregator(dir_);
  Session old(aggregator, absl::Seconds(10));
  ASSERT_TRUE(old.Write(Hello("node-a", "node-a-token")));
  ASSERT_TRUE(old.Read().has_value());
  ASSERT_TRUE(old.Write(StatusMessage(tu::Status(id_, "node-a"))));
  const std::string file = tu::PcapFile(0, 3);
  ASSERT_TRUE(old.Write(
      ChunkMessage(tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, file))));
  auto ack = old.Read();
  ASSERT_TRUE(ack.has_value() && ack->has_ack());
  Session other(aggregator, absl::Seconds(10));
  ASSERT_TRUE(other.Write(Hello("node-b", "node-b-token")));
  ASSERT_TRUE(other.Read().has_value());

  Session next(aggregator, absl::Seconds(10));
  ASSERT_TRUE(next.Write(Hello("node-a", "node-a-token")));
  auto welcome = next.Read();
  ASSERT_TRUE(welcome.has_value());
  ASSERT_TRUE(welcome->has_welcome());
  // What the old stream stored is where the new one resumes.
  ASSERT_EQ(welcome->welcome().resume_size(), 1);
  EXPECT_EQ(welcome->welcome().resume(0).offset(), file.size());

  auto ended = old.Read();
  ASSERT_TRUE(ended.has_value()) << "the old stream is still open";
  EXPECT_EQ(ended->error().code(), grpc::StatusCode::ABORTED);
  EXPECT_TRUE(absl::StrContains(ended->error().message(), "replaced"))
      << ended->error().message();
  EXPECT_EQ(old.Drain().error_code(), grpc::StatusCode::ABORTED);

  // The new stream works; node-b's was not touched.
  ASSERT_TRUE(next.Write(ChunkMessage(tu::MakeChunk(
      id_, "run-1-w5/ring0", 0, file.size(), tu::Records(3, 2)))));
  ack = next.Read();
  ASSERT_TRUE(ack.has_value() && ack->has_ack());
  EXPECT_TRUE(next.Close().ok());
  EXPECT_TRUE(other.Close().ok());
}

TEST_F(IngestTest, StatusForAnotherNodeIsRefusedForThatCaptureOnly) {
  Aggregator aggregator(dir_);
  auto [replies, status] =
      Exchange(aggregator, {Hello("node-a", "node-a-token"),
                            StatusMessage(tu::Status(id_, "node-b"))});
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[1].capture_rejected().capture_id(), id_);
  EXPECT_EQ(replies[1].capture_rejected().code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(aggregator.registry().Get(id_).has_value());
}

// A capture refused for a reason of its own gets a CaptureRejected; the
// node's other captures go on on the same stream, and chunks acked before
// stay acked.
TEST_F(IngestTest, ACaptureRefusedKeepsTheStream) {
  Aggregator aggregator(dir_,
                        [](IngestOptions* o) { o->max_file_bytes = 1 << 20; });
  const std::string unknown = tu::CaptureId("unknown");
  const std::string big = tu::CaptureId("big");
  const std::string huge = tu::CaptureId("huge");
  const std::string wraps = tu::CaptureId("wraps");
  const std::string gap = tu::CaptureId("gap");
  const std::string torn = tu::CaptureId("torn");
  const std::string file = tu::PcapFile(0, 3);
  auto big_status = tu::Status(big, "node-a");
  big_status.set_message(std::string(70 << 10, 'm'));
  std::string not_records = tu::Records(3, 2);
  not_records.pop_back();

  std::vector<AgentMessage> messages = {
      Hello("node-a", "node-a-token"),
      StatusMessage(tu::Status(id_, "node-a")),
      ChunkMessage(tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, file)),
      // No status first: FailedPrecondition; its later chunks are ignored.
      ChunkMessage(tu::MakeChunk(unknown, "run-1-w5/ring0", 0, 0, file)),
      ChunkMessage(tu::MakeChunk(unknown, "run-1-w5/ring0", 0, file.size(),
                                 tu::Records(3, 1))),
      StatusMessage(big_status),
      StatusMessage(tu::Status(huge, "node-a")),
      ChunkMessage(tu::MakeChunk(
          huge, "run-1-w5/ring0", 0, 0,
          pcap::testutil::MakePcapFile(pcap::GlobalHeader(), 0, 100, 1000))),
      StatusMessage(tu::Status(wraps, "node-a")),
      ChunkMessage(tu::MakeChunk(wraps, "run-1-w5/ring0", 0, 0, file)),
      ChunkMessage(tu::MakeChunk(wraps, "run-1-w5/ring0", 0, ~uint64_t{0} - 100,
                                 tu::Records(3, 2))),
      StatusMessage(tu::Status(gap, "node-a")),
      ChunkMessage(tu::MakeChunk(gap, "run-1-w5/ring0", 0, 0, file)),
      ChunkMessage(
          tu::MakeChunk(gap, "run-1-w5/ring0", 0, 1 << 20, tu::Records(3, 2))),
      StatusMessage(tu::Status(torn, "node-a")),
      ChunkMessage(tu::MakeChunk(torn, "run-1-w5/ring0", 0, 0, file)),
      ChunkMessage(
          tu::MakeChunk(torn, "run-1-w5/ring0", 0, file.size(), not_records)),
      ChunkMessage(tu::MakeChunk(id_, "run-1-w5/ring0", 0, file.size(),
                                 tu::Records(3, 2))),
  };
  auto [replies, status] = Exchange(aggregator, messages);
  EXPECT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  std::vector<std::string> seen;
  for (const auto& r : replies) {
    if (r.has_welcome()) seen.push_back("welcome");
    if (r.has_ack()) {
      seen.push_back(
          absl::StrCat("ack ", r.ack().capture_id(), " ", r.ack().offset()));
    }
    if (r.has_capture_rejected()) {
      seen.push_back(absl::StrCat("rejected ",
                                  r.capture_rejected().capture_id(), " ",
                                  r.capture_rejected().code()));
    }
    if (r.has_error()) seen.push_back(absl::StrCat("error ", r.error().code()));
  }
  const int kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  const std::vector<std::string> expected = {
      "welcome",
      absl::StrCat("ack ", id_, " ", file.size()),
      absl::StrCat("rejected ", unknown, " ",
                   grpc::StatusCode::FAILED_PRECONDITION),
      absl::StrCat("rejected ", big, " ", kInvalid),
      absl::StrCat("rejected ", huge, " ", kInvalid),
      absl::StrCat("ack ", wraps, " ", file.size()),
      absl::StrCat("rejected ", wraps, " ", kInvalid),
      absl::StrCat("ack ", gap, " ", file.size()),
      absl::StrCat("rejected ", gap, " ", kInvalid),
      absl::StrCat("ack ", torn, " ", file.size()),
      absl::StrCat("rejected ", torn, " ", kInvalid),
      absl::StrCat("ack ", id_, " ", file.size() + tu::Records(3, 2).size()),
  };
  EXPECT_EQ(seen, expected);
  EXPECT_FALSE(aggregator.registry().Get(big).has_value());
  EXPECT_EQ(aggregator.registry().Get(wraps)->bytes(), file.size());
  EXPECT_EQ(aggregator.registry().Get(gap)->bytes(), file.size());
  EXPECT_EQ(aggregator.registry().Get(gap)->bytes_lost(), 0u);
  EXPECT_EQ(aggregator.registry().Get(torn)->bytes(), file.size());
  EXPECT_EQ(aggregator.registry().Get(id_)->packets(), 5u);
}

// A capture's refusal waits on the commit strand; a small chunk of another
// capture right after it must not be committed and acked before it (on the
// stream's strand, as small batches are when the commit strand is idle).
// One worker thread, held by another stream's slow token review while the
// refusal and the chunk queue up: the stream's strand then handles both in
// one turn, before the commit strand can run.
TEST_F(IngestTest, ARefusalIsNotOvertakenByALaterCapturesAck) {
  Aggregator aggregator(dir_, [](IngestOptions* o) { o->worker_threads = 1; });
  const std::string other = tu::CaptureId("other");
  Session agent(aggregator);
  ASSERT_TRUE(agent.Write(Hello("node-b", "node-b-token")));
  ASSERT_TRUE(agent.Read().has_value());
  ASSERT_TRUE(agent.Write(StatusMessage(tu::Status(id_, "node-b"))));

  Session slow(aggregator);
  const int reviews = aggregator.auth().calls.load();
  ASSERT_TRUE(slow.Write(Hello("node-a", "slow-node-a-token")));
  ASSERT_TRUE(
      WaitFor([&] { return aggregator.auth().calls.load() > reviews; }));
  // The worker is in the review (1.5 s) now.
  ASSERT_TRUE(agent.Write(StatusMessage(tu::Status(other, "node-a"))));
  const std::string file = tu::PcapFile(0, 3);
  ASSERT_TRUE(agent.Write(
      ChunkMessage(tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, file))));

  auto first = agent.Read();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->has_capture_rejected()) << first->DebugString();
  EXPECT_EQ(first->capture_rejected().capture_id(), other);
  auto second = agent.Read();
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(second->has_ack()) << second->DebugString();
  EXPECT_EQ(second->ack().offset(), file.size());
  EXPECT_TRUE(agent.Close().ok());
  ASSERT_TRUE(slow.Read().has_value());
  EXPECT_TRUE(slow.Close().ok());
}

// The store cannot make a capture's directory (here a file is in the way):
// that capture is refused, the node's others go on.
TEST_F(IngestTest, ACaptureWhoseDirectoryCannotBeMadeIsRefusedAlone) {
  Aggregator aggregator(dir_);
  const std::string blocked = tu::CaptureId("blocked");
  auto [replies, status] =
      Exchange(aggregator, {Hello("node-a", "node-a-token"),
                            StatusMessage(tu::Status(id_, "node-a")),
                            StatusMessage(tu::Status(blocked, "node-a"))});
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string in_the_way =
      absl::StrCat(dir_, "/captures/", blocked, "/run-1-w5");
  ASSERT_TRUE(std::ofstream(in_the_way).good()) << in_the_way;

  const std::string file = tu::PcapFile(0, 3);
  std::tie(replies, status) = Exchange(
      aggregator,
      {Hello("node-a", "node-a-token"),
       ChunkMessage(tu::MakeChunk(blocked, "run-1-w5/ring0", 0, 0, file)),
       ChunkMessage(tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, file))});
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[1].capture_rejected().capture_id(), blocked);
  EXPECT_TRUE(
      absl::StrContains(replies[1].capture_rejected().message(), "run-1-w5"))
      << replies[1].capture_rejected().message();
  EXPECT_EQ(replies[2].ack().capture_id(), id_);
  EXPECT_EQ(aggregator.registry().Get(id_)->bytes(), file.size());
}

TEST_F(IngestTest, ChunksAreCheckedStoredAndAcked) {
  Aggregator aggregator(dir_);
  const std::string file = tu::PcapFile(0, 20);
  auto chunk = tu::MakeChunk(id_, "run-1-w5/ring0", 3, 0, file);
  auto [replies, status] =
      Exchange(aggregator, {Hello("node-a", "node-a-token"),
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

  // Corruption in transit ends the stream: the agent reconnects and resends.
  auto bad =
      tu::MakeChunk(id_, "run-1-w5/ring0", 3, file.size(), tu::Records(20, 5));
  bad.set_crc32c(bad.crc32c() ^ 1);
  std::tie(replies, status) = Exchange(
      aggregator, {Hello("node-a", "node-a-token"), ChunkMessage(bad)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[1].error().code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(aggregator.registry().Get(id_)->bytes(), file.size());
}

// Chunks sent back to back (stored in group commits while they queue up) are
// each acknowledged, in order, at their end; a bad chunk after them loses
// none of them.
TEST_F(IngestTest, ChunksSentBackToBackAreEachAckedInOrder) {
  Aggregator aggregator(dir_);
  std::vector<AgentMessage> messages = {
      Hello("node-a", "node-a-token"),
      StatusMessage(tu::Status(id_, "node-a"))};
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

// A peer that sends but never reads: once its unread replies pass the
// limit the aggregator stops reading from it (and storing for it), instead
// of queueing replies without end; when it reads again, all is acked.
TEST_F(IngestTest, TheServerStopsReadingWhileRepliesPileUp) {
  Aggregator aggregator(
      dir_, [](IngestOptions* o) { o->max_outgoing_bytes = 16 << 10; });
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 << 10);
  Session agent(aggregator, absl::Seconds(60), args);
  const int kChunks = 4000;
  std::thread writer([&] {
    agent.Write(Hello("node-a", "node-a-token"));
    agent.Write(StatusMessage(tu::Status(id_, "node-a")));
    uint64_t offset = 0;
    for (int i = 0; i < kChunks; ++i) {
      const std::string data = i == 0 ? tu::PcapFile(i, 1) : tu::Records(i, 1);
      if (!agent.Write(ChunkMessage(
              tu::MakeChunk(id_, "run-1-w5/ring0", 0, offset, data)))) {
        return;
      }
      offset += data.size();
    }
  });
  auto stored = [&]() -> uint64_t {
    auto c = aggregator.registry().Get(id_);
    return c.has_value() ? c->packets() : 0;
  };
  // Wait until storing starts, then until it stops (or everything is
  // stored): no progress for a second.
  ASSERT_TRUE(WaitFor([&] { return stored() > 0; }, absl::Seconds(20)));
  uint64_t last = stored();
  for (int still = 0, i = 0; still < 4 && i < 100; ++i) {
    absl::SleepFor(absl::Milliseconds(250));
    const uint64_t now = stored();
    still = now == last ? still + 1 : 0;
    last = now;
  }
  EXPECT_GT(stored(), 0u);
  EXPECT_LT(stored(), static_cast<uint64_t>(kChunks))
      << "the aggregator kept reading although nobody read its acks";
  std::vector<AggregatorMessage> replies;
  std::thread reader([&] {
    AggregatorMessage m;
    for (int i = 0; i < kChunks + 1; ++i) {
      auto r = agent.Read();
      if (!r) break;
      replies.push_back(*r);
    }
  });
  writer.join();
  reader.join();
  EXPECT_TRUE(agent.Close().ok());
  ASSERT_EQ(replies.size(), static_cast<size_t>(kChunks) + 1);
  EXPECT_EQ(stored(), static_cast<uint64_t>(kChunks));
}

TEST_F(IngestTest, ResumePointsSurviveARestartOnTheSameDataDir) {
  const std::string file = tu::PcapFile(0, 20);
  {
    Aggregator aggregator(dir_);
    auto [replies, status] = Exchange(
        aggregator,
        {Hello("node-a", "node-a-token"),
         StatusMessage(tu::Status(id_, "node-a")),
         ChunkMessage(tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, file))});
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  Aggregator aggregator(dir_);
  AgentMessage hello = Hello("node-a", "node-a-token");
  hello.mutable_hello()->add_capture_ids(id_);
  auto [replies, status] = Exchange(aggregator, {hello});
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(replies.size(), 1u);
  ASSERT_EQ(replies[0].welcome().resume_size(), 1);
  EXPECT_FALSE(replies[0].welcome().more_resume());
  const auto& point = replies[0].welcome().resume(0);
  EXPECT_EQ(point.capture_id(), id_);
  EXPECT_EQ(point.file(), "run-1-w5/ring0");
  EXPECT_EQ(point.offset(), file.size());
  EXPECT_TRUE(aggregator.registry().Get(id_)->on_node());
  // Another node gets none of node-a's resume points.
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-b", "node-b-token")});
  EXPECT_EQ(replies[0].welcome().resume_size(), 0);
  // A hello without the capture: it is gone from the node, kept here.
  std::tie(replies, status) =
      Exchange(aggregator, {Hello("node-a", "node-a-token")});
  auto shown = aggregator.registry().Get(id_);
  EXPECT_FALSE(shown->on_node());
  EXPECT_EQ(shown->state(), packetcapture::v1::Capture::STOPPED);
  EXPECT_TRUE(shown->has_expire_time());
}

// A node with many stored files: the Welcome carries the newest generation
// of each file first, every message stays within the page size, and the
// rest follows in ResumeBatch messages ending with last = true.
TEST_F(IngestTest, ResumePointsArePagedAfterTheWelcome) {
  const size_t kPage = 1024;
  Aggregator aggregator(
      dir_, [&](IngestOptions* o) { o->resume_page_bytes = kPage; });
  const int kFiles = 30;
  std::vector<AgentMessage> upload = {
      Hello("node-a", "node-a-token"),
      // Room for both generations (the store keeps max_files files).
      StatusMessage(tu::Status(
          id_, "node-a", packetcapture::v1::Capture::RUNNING, 2 * kFiles))};
  for (uint64_t generation : {0, 1}) {
    for (int i = 0; i < kFiles; ++i) {
      // Files 0..9 reached a second generation.
      if (generation == 1 && i >= 10) continue;
      const std::string name = absl::StrCat(
          "run-1-w", kFiles, "/", pcap::RingFileName("ring", i, kFiles));
      upload.push_back(ChunkMessage(
          tu::MakeChunk(id_, name, generation, 0, tu::PcapFile(0, 1 + i % 3))));
    }
  }
  auto [replies, status] = Exchange(aggregator, upload);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(replies.size(), upload.size() - 1);  // welcome and acks

  Session agent(aggregator);
  ASSERT_TRUE(agent.Write(Hello("node-a", "node-a-token")));
  auto welcome = agent.Read();
  ASSERT_TRUE(welcome.has_value() && welcome->has_welcome());
  EXPECT_TRUE(welcome->welcome().more_resume());
  std::vector<std::vector<ResumePoint>> pages = {
      {welcome->welcome().resume().begin(), welcome->welcome().resume().end()}};
  for (;;) {
    auto m = agent.Read();
    ASSERT_TRUE(m.has_value() && m->has_resume_batch());
    pages.emplace_back(m->resume_batch().resume().begin(),
                       m->resume_batch().resume().end());
    if (m->resume_batch().last()) break;
  }
  EXPECT_TRUE(agent.Close().ok());
  ASSERT_GT(pages.size(), 2u) << pages[0].size() << " + " << pages[1].size();

  std::set<std::tuple<std::string, std::string, uint64_t, uint64_t>> got;
  std::map<std::string, uint64_t> newest;  // file -> generation
  for (const auto& page : pages) {
    size_t bytes = 0;
    for (const auto& p : page) {
      bytes += p.ByteSizeLong();
      EXPECT_TRUE(
          got.emplace(p.capture_id(), p.file(), p.file_generation(), p.offset())
              .second);
      uint64_t& g = newest[p.file()];
      g = std::max(g, p.file_generation());
    }
    EXPECT_LE(bytes, kPage);
    EXPECT_FALSE(page.empty());
  }
  std::set<std::tuple<std::string, std::string, uint64_t, uint64_t>> want;
  for (const auto& p : aggregator.store().ResumePoints("node-a")) {
    want.emplace(p.capture_id(), p.file(), p.file_generation(), p.offset());
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(got.size(), 40u);
  // Newest generations come first: no older generation before the last one.
  size_t seen = 0;
  bool older_seen = false;
  for (const auto& page : pages) {
    for (const auto& p : page) {
      const bool older = p.file_generation() < newest[p.file()];
      EXPECT_FALSE(!older && older_seen)
          << "newest after an older one at " << seen;
      older_seen |= older;
      ++seen;
    }
  }
}

// A hello whose inventory is pending marks nothing gone; the Inventory that
// follows does.
TEST_F(IngestTest, InventoryPendingDefersMarkingCapturesGone) {
  Aggregator aggregator(dir_);
  const std::string kept = tu::CaptureId("kept");
  auto [replies, status] =
      Exchange(aggregator, {Hello("node-a", "node-a-token"),
                            StatusMessage(tu::Status(id_, "node-a")),
                            StatusMessage(tu::Status(kept, "node-a"))});
  ASSERT_TRUE(status.ok()) << status.error_message();

  Session agent(aggregator);
  AgentMessage hello = Hello("node-a", "node-a-token");
  hello.mutable_hello()->set_inventory_pending(true);
  hello.mutable_hello()->add_capture_ids(kept);
  ASSERT_TRUE(agent.Write(hello));
  ASSERT_TRUE(agent.Read().has_value());
  EXPECT_TRUE(aggregator.registry().Get(id_)->on_node());

  AgentMessage inventory;
  inventory.mutable_inventory()->add_capture_ids(kept);
  ASSERT_TRUE(agent.Write(inventory));
  // A second inventory is fine too.
  ASSERT_TRUE(agent.Write(inventory));
  status = agent.Close();
  EXPECT_TRUE(status.ok()) << status.error_message();
  auto gone = aggregator.registry().Get(id_);
  EXPECT_FALSE(gone->on_node());
  EXPECT_EQ(gone->state(), packetcapture::v1::Capture::STOPPED);
  EXPECT_EQ(gone->message(), "no longer reported by node node-a");
  EXPECT_TRUE(aggregator.registry().Get(kept)->on_node());
}

// Agents ping an idle stream (every 10 s in production) so that either side
// notices a dead peer; the aggregator must accept those pings rather than
// end the connection for "too many pings".
TEST_F(IngestTest, AgentKeepalivePingsAreAccepted) {
  Aggregator aggregator(dir_, [](IngestOptions* o) {
    o->keepalive.min_agent_ping_interval = absl::Milliseconds(100);
  });
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 200);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 200);
  Session agent(aggregator, absl::Seconds(20), args);
  ASSERT_TRUE(agent.Write(Hello("node-a", "node-a-token")));
  ASSERT_TRUE(agent.Read().has_value());
  absl::SleepFor(absl::Seconds(6));  // idle: a ping a second (gRPC clamps)
  ASSERT_TRUE(agent.Write(StatusMessage(tu::Status(id_, "node-a"))));
  ASSERT_TRUE(agent.Write(ChunkMessage(
      tu::MakeChunk(id_, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 3)))));
  auto ack = agent.Read();
  ASSERT_TRUE(ack.has_value()) << "the stream ended while idle";
  EXPECT_TRUE(ack->has_ack());
  grpc::Status status = agent.Close();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace pc::aggregator
