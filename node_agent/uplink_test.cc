#include "node_agent/uplink.h"

#include <atomic>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "aggregator/ingest_service.h"
#include "aggregator/store.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace pc::agent {
namespace {

namespace atu = aggregator::testutil;
namespace ptu = pcap::testutil;
using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;

class AcceptToken : public aggregator::Authenticator {
 public:
  absl::StatusOr<aggregator::AgentIdentity> Authenticate(
      const std::string& token) override {
    if (token == "agent-token")
      return aggregator::AgentIdentity{"agent", "node-a"};
    return absl::UnauthenticatedError("bad token");
  }
};

// The real store and ingest service on a fixed port.
class Aggregator {
 public:
  Aggregator(const std::string& dir, int port) {
    aggregator::StoreOptions options;
    options.data_dir = dir;
    store_ = std::move(*aggregator::Store::Open(options, &registry_));
    aggregator::IngestOptions ingest;
    ingest.max_inflight_bytes = 256 * 1024;
    ingest.max_chunk_bytes = 64 * 1024;
    service_ = std::make_unique<aggregator::IngestServiceImpl>(store_.get(),
                                                               &auth_, ingest);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                             grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
  }
  ~Aggregator() { server_->Shutdown(std::chrono::system_clock::now()); }
  int port() const { return port_; }
  CaptureRegistry& registry() { return registry_; }
  aggregator::Store& store() { return *store_; }

 private:
  CaptureRegistry registry_;
  AcceptToken auth_;
  std::unique_ptr<aggregator::Store> store_;
  std::unique_ptr<aggregator::IngestServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// Welcomes with a small in-flight limit and never acknowledges anything.
class SilentAggregator final
    : public packetcapture::v1::IngestService::Service {
 public:
  grpc::Status Report(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<AggregatorMessage, AgentMessage>*
                          stream) override {
    (void)context;
    AgentMessage m;
    if (!stream->Read(&m)) return grpc::Status::OK;
    AggregatorMessage welcome;
    welcome.mutable_welcome()->set_max_inflight_bytes(kLimit);
    welcome.mutable_welcome()->set_max_chunk_bytes(16 * 1024);
    stream->Write(welcome);
    while (stream->Read(&m)) {
      absl::MutexLock lock(&mu_);
      if (m.has_chunk()) chunk_bytes_ += m.chunk().data().size();
      if (m.has_status()) last_status_ = m.status();
    }
    return grpc::Status::OK;
  }
  uint64_t chunk_bytes() {
    absl::MutexLock lock(&mu_);
    return chunk_bytes_;
  }
  packetcapture::v1::Capture last_status() {
    absl::MutexLock lock(&mu_);
    return last_status_;
  }
  static constexpr uint64_t kLimit = 100 * 1024;

 private:
  absl::Mutex mu_;
  uint64_t chunk_bytes_ = 0;
  packetcapture::v1::Capture last_status_;
};

class UplinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ptu::MakeTempDir();
    capture_dir_ = root_ + "/captures";
    std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-1-w3");
    token_file_ = root_ + "/token";
    ptu::WriteFile(token_file_, "agent-token\n");
  }

  UplinkOptions Options(int port) {
    UplinkOptions o;
    o.node = "node-a";
    o.aggregator = absl::StrCat("127.0.0.1:", port);
    o.token_file = token_file_;
    o.capture_dir = capture_dir_;
    o.poll_interval = absl::Milliseconds(20);
    o.initial_backoff = absl::Milliseconds(50);
    o.max_backoff = absl::Milliseconds(200);
    return o;
  }

  void PutStatus(const std::vector<std::string>& files) {
    auto status =
        atu::Status(id_, "node-a", packetcapture::v1::Capture::RUNNING, 3);
    for (const auto& name : files) status.add_files()->set_name(name);
    registry_.Put(status);
  }

  std::string Path(const std::string& name) {
    return absl::StrCat(capture_dir_, "/", id_, "/", name);
  }

  template <typename F>
  bool WaitFor(F f, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (f()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return f();
  }

  uint64_t StoredBytes(Aggregator& a) {
    auto c = a.registry().Get(id_);
    return c ? c->bytes() : 0;
  }

  std::string Download(Aggregator& a) {
    auto reader = a.store().OpenReader(id_, false);
    EXPECT_TRUE(reader.ok());
    std::string out;
    for (int i = 0; i < 10000; ++i) {
      auto n = (*reader)->Read(&out, 65536);
      if (!n.ok() || *n == 0) break;
    }
    return out;
  }

  std::string root_, capture_dir_, token_file_;
  const std::string id_ = atu::CaptureId("web-1");
  CaptureRegistry registry_;
};

TEST_F(UplinkTest, UploadsEveryRecordOnceAndResumesAfterTheAggregatorRestarts) {
  const std::string data_dir = root_ + "/aggregator";
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(0, 3000));
  PutStatus({"run-1-w3/ring0"});
  auto first = std::make_unique<Aggregator>(data_dir, 0);
  const int port = first->port();
  Uplink uplink(Options(port), &registry_);
  uplink.Start();
  const uint64_t size0 = atu::PcapFile(0, 3000).size();
  ASSERT_TRUE(WaitFor([&] { return StoredBytes(*first) == size0; }))
      << StoredBytes(*first) << " of " << size0 << ": "
      << uplink.stats().last_error;
  EXPECT_EQ(first->registry().Get(id_)->node(), "node-a");

  // The aggregator goes away; tcpdump keeps writing, into a new file too.
  first.reset();
  ptu::AppendFile(Path("run-1-w3/ring0"), atu::Records(3000, 2000));
  ptu::WriteFile(Path("run-1-w3/ring1"), atu::PcapFile(5000, 1000));
  PutStatus({"run-1-w3/ring0", "run-1-w3/ring1"});
  absl::SleepFor(absl::Milliseconds(300));
  Aggregator second(data_dir, port);
  const uint64_t total = size0 + atu::Records(3000, 2000).size() +
                         atu::PcapFile(5000, 1000).size();
  ASSERT_TRUE(WaitFor([&] { return StoredBytes(second) == total; }))
      << StoredBytes(second) << " of " << total << ": "
      << uplink.stats().last_error;
  auto seqs = ptu::SequenceNumbers(Download(second));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 6000));
  EXPECT_GE(uplink.stats().connects, 2u);
  EXPECT_EQ(uplink.stats().bytes_lost, 0u);
  // The forwarded status carries the upload counter.
  ASSERT_TRUE(WaitFor(
      [&] { return second.registry().Get(id_)->bytes_uploaded() == total; }));
  uplink.Stop();
}

TEST_F(UplinkTest, InflightBytesStayBoundedAndOverwrittenDataIsCounted) {
  SilentAggregator silent;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&silent);
  auto server = builder.BuildAndStart();
  // About 3 MB waiting, far more than the 100 KiB the aggregator allows.
  const std::string big = atu::PcapFile(0, 40000);
  ptu::WriteFile(Path("run-1-w3/ring0"), big);
  PutStatus({"run-1-w3/ring0"});
  Uplink uplink(Options(port), &registry_);
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return silent.chunk_bytes() > 0; }));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_LE(silent.chunk_bytes(), SilentAggregator::kLimit);
  EXPECT_GT(silent.chunk_bytes(), SilentAggregator::kLimit / 2);
  EXPECT_LE(uplink.stats().max_inflight, SilentAggregator::kLimit);

  // tcpdump reuses the slot before anything was acknowledged: the old
  // generation is lost and the status says so.
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(100000, 10));
  registry_.Put([&] {
    auto s = atu::Status(id_, "node-a", packetcapture::v1::Capture::RUNNING, 3);
    s.add_files()->set_name("run-1-w3/ring0");
    s.set_message("reused");
    return s;
  }());
  ASSERT_TRUE(WaitFor([&] { return uplink.stats().bytes_lost >= big.size(); }))
      << uplink.stats().bytes_lost;
  ASSERT_TRUE(
      WaitFor([&] { return silent.last_status().bytes_lost() >= big.size(); }));
  uplink.Stop();
  server->Shutdown(std::chrono::system_clock::now());
}

TEST_F(UplinkTest, AStoppedCapturesLastBytesAreUploadedFromItsDeletedFiles) {
  Aggregator aggregator(root_ + "/aggregator", 0);
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(0, 1000));
  PutStatus({"run-1-w3/ring0"});
  Uplink uplink(Options(aggregator.port()), &registry_);
  uplink.Start();
  const uint64_t size0 = atu::PcapFile(0, 1000).size();
  ASSERT_TRUE(WaitFor([&] { return StoredBytes(aggregator) == size0; }));

  // What tcpdump flushed as it stopped, then the agent's stop: the capture
  // leaves the registry and its directory is deleted at once.
  ptu::AppendFile(Path("run-1-w3/ring0"), atu::Records(1000, 2000));
  registry_.Remove(id_);
  std::filesystem::remove_all(capture_dir_ + "/" + id_);

  const uint64_t total = size0 + atu::Records(1000, 2000).size();
  ASSERT_TRUE(WaitFor([&] { return uplink.stats().captures_drained == 1; }))
      << uplink.stats().last_error;
  ASSERT_TRUE(WaitFor([&] {
    auto c = aggregator.registry().Get(id_);
    return c && c->state() == packetcapture::v1::Capture::STOPPED &&
           !c->on_node();
  }));
  EXPECT_EQ(StoredBytes(aggregator), total);
  auto seqs = ptu::SequenceNumbers(Download(aggregator));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 3000));
  EXPECT_EQ(uplink.stats().bytes_lost, 0u);
  EXPECT_EQ(aggregator.registry().Get(id_)->bytes_lost(), 0u);
  EXPECT_EQ(aggregator.registry().Get(id_)->bytes_uploaded(), total);
  uplink.Stop();
}

TEST_F(UplinkTest, ADrainThatRunsOutOfTimeCountsWhatItCouldNotUpload) {
  SilentAggregator silent;  // never acknowledges
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&silent);
  auto server = builder.BuildAndStart();
  const std::string file = atu::PcapFile(0, 100);
  ptu::WriteFile(Path("run-1-w3/ring0"), file);
  PutStatus({"run-1-w3/ring0"});
  UplinkOptions options = Options(port);
  options.drain_timeout = absl::Milliseconds(300);
  Uplink uplink(options, &registry_);
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return silent.chunk_bytes() > 0; }));
  const absl::Time stopped = absl::Now();
  registry_.Remove(id_);
  std::filesystem::remove_all(capture_dir_ + "/" + id_);
  ASSERT_TRUE(WaitFor([&] {
    return silent.last_status().state() == packetcapture::v1::Capture::STOPPED;
  }));
  EXPECT_GE(absl::Now() - stopped, absl::Milliseconds(300));
  EXPECT_EQ(silent.last_status().bytes_lost(), file.size());
  EXPECT_FALSE(silent.last_status().on_node());
  EXPECT_EQ(uplink.stats().captures_drained, 0u);
  uplink.Stop();
  server->Shutdown(std::chrono::system_clock::now());
}

TEST_F(UplinkTest, ARejectedTokenIsRetriedWithTheRotatedToken) {
  const std::string data_dir = root_ + "/aggregator";
  ptu::WriteFile(token_file_, "expired-token");
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(0, 10));
  PutStatus({"run-1-w3/ring0"});
  Aggregator aggregator(data_dir, 0);
  Uplink uplink(Options(aggregator.port()), &registry_);
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] {
    return uplink.stats().last_error.find("UNAUTHENTICATED") !=
           std::string::npos;
  })) << uplink.stats().last_error;
  EXPECT_EQ(StoredBytes(aggregator), 0u);
  ptu::WriteFile(token_file_, "agent-token");
  ASSERT_TRUE(WaitFor(
      [&] { return StoredBytes(aggregator) == atu::PcapFile(0, 10).size(); }));
  uplink.Stop();
}

}  // namespace
}  // namespace pc::agent
