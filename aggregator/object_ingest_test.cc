// The ingest service over ObjectStore replicas sharing one bucket: an agent
// is welcomed by the replica that takes its node, sent to it by the others,
// resumes on another replica where the first stored up to, and is ended
// (ABORTED) when its replica loses the node.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/fake_node_ownership.h"
#include "aggregator/ingest_service.h"
#include "aggregator/object_store.h"
#include "aggregator/test_util.h"
#include "common/capture_registry.h"
#include "common/pcap/pcap_test_util.h"
#include "common/s3/memory_object_client.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
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

// One aggregator replica: store, ingest service and its gRPC server.
struct Replica {
  CaptureRegistry registry;
  std::unique_ptr<tu::FakeOwnership> ownership;
  std::unique_ptr<ObjectStore> store;
  std::unique_ptr<IngestServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<packetcapture::v1::IngestService::Stub> stub;
};

class ObjectIngestTest : public ::testing::Test {
 protected:
  std::unique_ptr<Replica> Start(const std::string& name) {
    auto r = std::make_unique<Replica>();
    r->ownership = std::make_unique<tu::FakeOwnership>(&leases_, name);
    ObjectStoreOptions options;
    options.client = &client_;
    options.prefix = "cluster";
    options.replica_id = name;
    options.ownership = r->ownership.get();
    options.catalog_poll_interval = absl::Hours(1);
    auto store = ObjectStore::Open(options, &r->registry);
    EXPECT_TRUE(store.ok()) << store.status();
    r->store = std::move(*store);
    r->service = std::make_unique<IngestServiceImpl>(r->store.get(), &auth_,
                                                     IngestOptions());
    IngestServiceImpl* service = r->service.get();
    r->store->SetOnNodeLost([service](const std::string& node) {
      service->EndStreamOf(node, absl::AbortedError("node lost"));
    });
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(r->service.get());
    r->server = builder.BuildAndStart();
    r->stub = packetcapture::v1::IngestService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    return r;
  }

  static void Stop(Replica* r) {
    r->server->Shutdown();
    r->service.reset();
  }

  static AgentMessage Hello(const std::string& node, const std::string& id) {
    AgentMessage m;
    m.mutable_hello()->set_node(node);
    m.mutable_hello()->set_token(node);
    if (!id.empty()) m.mutable_hello()->add_capture_ids(id);
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

  s3::MemoryObjectClient client_;
  tu::FakeLeases leases_;
  NodeTokens auth_;
};

using Stream = grpc::ClientReaderWriter<AgentMessage, AggregatorMessage>;

// Reads until an ack reaching `offset` (false if the stream ends first).
bool ReadAck(Stream* stream, uint64_t offset) {
  AggregatorMessage reply;
  while (stream->Read(&reply)) {
    if (reply.has_ack() && reply.ack().offset() >= offset) return true;
  }
  return false;
}

TEST_F(ObjectIngestTest, AnAgentMovesBetweenReplicasWithoutLosingAByte) {
  auto a = Start("replica-a");
  auto b = Start("replica-b");
  const std::string id = tu::CaptureId("web-1");
  const std::string head = tu::PcapFile(0, 5);
  const std::string more = tu::Records(5, 3);

  grpc::ClientContext first_context;
  auto first = a->stub->Report(&first_context);
  ASSERT_TRUE(first->Write(Hello("node-a", "")));
  AggregatorMessage reply;
  ASSERT_TRUE(first->Read(&reply));
  ASSERT_TRUE(reply.has_welcome());
  AgentMessage status;
  *status.mutable_status() = tu::Status(id, "node-a");
  ASSERT_TRUE(first->Write(status));
  AgentMessage chunk;
  *chunk.mutable_chunk() = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head);
  ASSERT_TRUE(first->Write(chunk));
  ASSERT_TRUE(ReadAck(first.get(), head.size()));

  // Meanwhile the agent tried the other replica: sent to the holder.
  {
    grpc::ClientContext context;
    auto refused = b->stub->Report(&context);
    ASSERT_TRUE(refused->Write(Hello("node-a", id)));
    while (refused->Read(&reply)) EXPECT_FALSE(reply.has_welcome());
    EXPECT_EQ(refused->Finish().error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
    auto to = context.GetServerTrailingMetadata().find(kRedirectMetadata);
    ASSERT_NE(to, context.GetServerTrailingMetadata().end());
    EXPECT_EQ(std::string(to->second.data(), to->second.size()),
              a->ownership->address());
  }

  // The first stream ends; the node is released and B welcomes the agent
  // with A's stored end.
  first->WritesDone();
  while (first->Read(&reply)) {
  }
  EXPECT_TRUE(first->Finish().ok());
  ASSERT_TRUE(WaitFor([&] { return !a->ownership->Holds("node-a"); }));
  grpc::ClientContext second_context;
  auto second = b->stub->Report(&second_context);
  ASSERT_TRUE(second->Write(Hello("node-a", id)));
  ASSERT_TRUE(second->Read(&reply));
  ASSERT_TRUE(reply.has_welcome());
  ASSERT_EQ(reply.welcome().resume_size(), 1);
  EXPECT_EQ(reply.welcome().resume(0).offset(), head.size());
  *chunk.mutable_chunk() =
      tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), more);
  ASSERT_TRUE(second->Write(chunk));
  ASSERT_TRUE(ReadAck(second.get(), head.size() + more.size()));

  // B loses the node: the stream ends ABORTED (the agent reconnects).
  b->ownership->Expire("node-a", /*tell=*/true);
  while (second->Read(&reply)) {
  }
  EXPECT_EQ(second->Finish().error_code(), grpc::StatusCode::ABORTED);

  // Every acknowledged byte is downloadable from either replica.
  ASSERT_TRUE(a->store->PollCatalog().ok());
  for (Replica* r : {a.get(), b.get()}) {
    auto reader = r->store->OpenReader(id, false);
    ASSERT_TRUE(reader.ok()) << reader.status();
    std::string out;
    for (int i = 0; i < 100; ++i) {
      auto n = (*reader)->Read(&out, 1 << 16);
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) break;
    }
    auto seqs = pcap::testutil::SequenceNumbers(out);
    ASSERT_TRUE(seqs.ok()) << seqs.status();
    EXPECT_EQ(*seqs, pcap::testutil::Range(0, 8));
  }
  Stop(a.get());
  Stop(b.get());
}

}  // namespace
}  // namespace pc::aggregator
