#include "node_agent/uplink.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "aggregator/ingest_service.h"
#include "aggregator/store.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"
#include "common/pcap/ring_reader.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "node_agent/ring_writer_test_util.h"
#include "node_agent/test_aggregator.h"

namespace pc::agent {
namespace {

namespace atu = aggregator::testutil;
namespace ptu = pcap::testutil;
using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;
using testutil::TcpdumpRing;

// The real aggregator with small flow-control windows, so that the uplink
// waits for acks within a test's few hundred KiB.
aggregator::IngestOptions SmallWindows() {
  aggregator::IngestOptions ingest;
  ingest.max_inflight_bytes = 256 * 1024;
  ingest.max_chunk_bytes = 64 * 1024;
  return ingest;
}
class Aggregator : public testutil::TestAggregator {
 public:
  Aggregator(const std::string& dir, int port)
      : TestAggregator(dir, port, SmallWindows()) {}
};

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

// First-record timestamp of a pcap file, in ns: the generation the uplink
// names its chunks with.
uint64_t GenerationOf(const std::string& file) {
  auto header = pcap::ParseGlobalHeader(file);
  EXPECT_TRUE(header.ok());
  auto first = pcap::DecodeRecordHeader(
      *header, absl::string_view(file).substr(pcap::kGlobalHeaderSize));
  EXPECT_TRUE(first.ok());
  return static_cast<uint64_t>(
      absl::ToUnixNanos(first->Timestamp(header->precision)));
}

// An IngestService whose answers a test scripts: what follows each hello
// (a welcome by default) and what answers each later message (an ack of
// every chunk by default). Records everything it receives.
class ScriptedAggregator final
    : public packetcapture::v1::IngestService::Service {
 public:
  struct Step {
    absl::Duration delay;  // before sending
    AggregatorMessage message;
  };
  struct Received {
    int connection;
    absl::Time at;
    AgentMessage message;
  };
  using HelloScript = std::function<std::vector<Step>(
      int connection, const packetcapture::v1::Hello& hello)>;
  using Answer = std::function<std::vector<AggregatorMessage>(
      int connection, const AgentMessage& message)>;

  ScriptedAggregator() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~ScriptedAggregator() override {
    server_->Shutdown(std::chrono::system_clock::now());
  }
  int port() const { return port_; }

  void OnHello(HelloScript script) {
    absl::MutexLock lock(&mu_);
    on_hello_ = std::move(script);
  }
  void OnMessage(Answer answer) {
    absl::MutexLock lock(&mu_);
    on_message_ = std::move(answer);
  }
  static AggregatorMessage Welcome() {
    AggregatorMessage m;
    m.mutable_welcome()->set_max_inflight_bytes(256 * 1024);
    m.mutable_welcome()->set_max_chunk_bytes(64 * 1024);
    return m;
  }
  static AggregatorMessage AckOf(const packetcapture::v1::Chunk& chunk) {
    AggregatorMessage m;
    auto* ack = m.mutable_ack();
    ack->set_capture_id(chunk.capture_id());
    ack->set_file(chunk.file());
    ack->set_file_generation(chunk.file_generation());
    ack->set_offset(chunk.offset() + chunk.data().size());
    return m;
  }

  // Ends every open stream (the agent sees it cancelled).
  void EndStreams() {
    absl::MutexLock lock(&mu_);
    for (auto* context : live_) context->TryCancel();
  }
  std::vector<Received> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  int connections() {
    absl::MutexLock lock(&mu_);
    return connections_;
  }
  // When the last scripted step of a connection's hello was about to be
  // sent.
  absl::Time script_done(int connection) {
    absl::MutexLock lock(&mu_);
    auto it = script_done_.find(connection);
    return it == script_done_.end() ? absl::InfiniteFuture() : it->second;
  }

  grpc::Status Report(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<AggregatorMessage, AgentMessage>*
                          stream) override {
    int connection;
    HelloScript on_hello;
    {
      absl::MutexLock lock(&mu_);
      connection = ++connections_;
      live_.insert(context);
      on_hello = on_hello_;
    }
    auto done = [&] {
      absl::MutexLock lock(&mu_);
      live_.erase(context);
      return grpc::Status::OK;
    };
    AgentMessage m;
    if (!stream->Read(&m)) return done();
    Record(connection, m);
    std::vector<Step> steps;
    if (on_hello) {
      steps = on_hello(connection, m.hello());
    } else {
      steps.push_back({absl::ZeroDuration(), Welcome()});
    }
    // The script runs beside the reads, so what the agent sends meanwhile is
    // recorded when it arrives. One Write at a time.
    absl::Mutex write_mu;
    std::thread script([&] {
      for (size_t i = 0; i < steps.size(); ++i) {
        absl::SleepFor(steps[i].delay);
        if (i + 1 == steps.size()) {
          absl::MutexLock lock(&mu_);
          script_done_[connection] = absl::Now();
        }
        absl::MutexLock lock(&write_mu);
        stream->Write(steps[i].message);
      }
    });
    while (stream->Read(&m)) {
      Record(connection, m);
      Answer answer;
      {
        absl::MutexLock lock(&mu_);
        answer = on_message_;
      }
      std::vector<AggregatorMessage> out;
      if (answer) {
        out = answer(connection, m);
      } else if (m.has_chunk()) {
        out.push_back(AckOf(m.chunk()));
      }
      absl::MutexLock lock(&write_mu);
      for (const auto& reply : out) stream->Write(reply);
    }
    script.join();
    return done();
  }

 private:
  void Record(int connection, const AgentMessage& m) {
    absl::MutexLock lock(&mu_);
    received_.push_back({connection, absl::Now(), m});
  }

  absl::Mutex mu_;
  HelloScript on_hello_ ABSL_GUARDED_BY(mu_);
  Answer on_message_ ABSL_GUARDED_BY(mu_);
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
  std::set<grpc::ServerContext*> live_ ABSL_GUARDED_BY(mu_);
  std::map<int, absl::Time> script_done_ ABSL_GUARDED_BY(mu_);
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
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
  uplink.MarkInventorySynced();
  uplink.Start();
  const uint64_t size0 = atu::PcapFile(0, 3000).size();
  ASSERT_TRUE(WaitFor([&] { return StoredBytes(*first) == size0; }))
      << StoredBytes(*first) << " of " << size0 << ": "
      << uplink.stats().last_error;
  EXPECT_EQ(first->registry().Get(id_)->node(), "node-a");
  // Everything on disk is acknowledged: no lag.
  EXPECT_TRUE(WaitFor([&] { return uplink.stats().lag_bytes == 0; }))
      << uplink.stats().lag_bytes;

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
  uplink.MarkInventorySynced();
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return silent.chunk_bytes() > 0; }));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_LE(silent.chunk_bytes(), SilentAggregator::kLimit);
  EXPECT_GT(silent.chunk_bytes(), SilentAggregator::kLimit / 2);
  EXPECT_LE(uplink.stats().max_inflight, SilentAggregator::kLimit);
  // Sent and never acknowledged: all of it is lag.
  EXPECT_GE(uplink.stats().lag_bytes, silent.chunk_bytes());
  EXPECT_LE(uplink.stats().lag_bytes, big.size());

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
  uplink.MarkInventorySynced();
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

// The agent shows a stopping capture STOPPED with its reason, then removes
// it as soon as its files are gone: often before the uplink looked. That
// last status still reaches the aggregator.
TEST_F(UplinkTest, TheLastStatusBeforeARemovalReachesTheAggregator) {
  Aggregator aggregator(root_ + "/aggregator", 0);
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(0, 100));
  PutStatus({"run-1-w3/ring0"});
  // Holds the uplink thread in a file read while both registry changes
  // happen, so it takes them together.
  absl::Notification in_read, release;
  std::atomic<bool> hold{false};
  UplinkOptions options = Options(aggregator.port());
  options.before_data_read = [&](const std::string&) {
    if (hold.exchange(false)) {
      in_read.Notify();
      release.WaitForNotification();
    }
  };
  Uplink uplink(options, &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  ASSERT_TRUE(WaitFor(
      [&] { return StoredBytes(aggregator) == atu::PcapFile(0, 100).size(); }));
  hold = true;
  ptu::AppendFile(Path("run-1-w3/ring0"), atu::Records(100, 110));
  ASSERT_TRUE(in_read.WaitForNotificationWithTimeout(absl::Seconds(10)));

  auto stopped =
      atu::Status(id_, "node-a", packetcapture::v1::Capture::STOPPED, 3);
  stopped.add_files()->set_name("run-1-w3/ring0");
  stopped.set_stop_reason(packetcapture::v1::ANNOTATION_REMOVED);
  stopped.set_message("stopped: annotation removed; node files deleted");
  registry_.Put(stopped);
  registry_.Remove(id_);
  release.Notify();
  std::filesystem::remove_all(capture_dir_ + "/" + id_);

  ASSERT_TRUE(WaitFor([&] {
    auto c = aggregator.registry().Get(id_);
    return c && c->state() == packetcapture::v1::Capture::STOPPED &&
           !c->on_node();
  }));
  auto c = aggregator.registry().Get(id_);
  EXPECT_EQ(c->stop_reason(), packetcapture::v1::ANNOTATION_REMOVED);
  EXPECT_EQ(c->message(), "stopped: annotation removed; node files deleted");
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
  uplink.MarkInventorySynced();
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
  uplink.MarkInventorySynced();
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

// Defect 4: a restarted agent said hello with an empty capture list before
// its first LIST was reconciled, and the aggregator marked its captures gone.
TEST_F(UplinkTest, HelloSaysInventoryPendingUntilTheFirstSyncThenSendsIt) {
  ScriptedAggregator fake;
  const std::string other = atu::CaptureId("web-2");
  // Before the first sync the registry is empty; the disk holds id_.
  Uplink uplink(Options(fake.port()), &registry_);
  uplink.Start();
  auto messages = [&](int connection, AgentMessage::KindCase kind) {
    std::vector<AgentMessage> out;
    for (const auto& r : fake.received()) {
      if (r.connection == connection && r.message.kind_case() == kind)
        out.push_back(r.message);
    }
    return out;
  };
  ASSERT_TRUE(
      WaitFor([&] { return !messages(1, AgentMessage::kHello).empty(); }));
  const auto hello = messages(1, AgentMessage::kHello)[0].hello();
  EXPECT_TRUE(hello.inventory_pending());
  EXPECT_EQ(std::vector<std::string>(hello.capture_ids().begin(),
                                     hello.capture_ids().end()),
            std::vector<std::string>{id_});
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(messages(1, AgentMessage::kInventory).empty());

  // The first sync: the agent now has id_ and a new capture.
  PutStatus({});
  registry_.Put(atu::Status(other, "node-a"));
  uplink.MarkInventorySynced();
  ASSERT_TRUE(
      WaitFor([&] { return !messages(1, AgentMessage::kInventory).empty(); }));
  const std::vector<std::string> all = {id_, other};
  {
    const auto inventory = messages(1, AgentMessage::kInventory)[0].inventory();
    std::vector<std::string> ids(inventory.capture_ids().begin(),
                                 inventory.capture_ids().end());
    std::sort(ids.begin(), ids.end());
    std::vector<std::string> want = all;
    std::sort(want.begin(), want.end());
    EXPECT_EQ(ids, want);
  }

  // Later connections: the hello carries the full list, nothing follows.
  fake.EndStreams();
  ASSERT_TRUE(
      WaitFor([&] { return !messages(2, AgentMessage::kHello).empty(); }));
  const auto again = messages(2, AgentMessage::kHello)[0].hello();
  EXPECT_FALSE(again.inventory_pending());
  std::vector<std::string> ids(again.capture_ids().begin(),
                               again.capture_ids().end());
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> want = all;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(ids, want);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(messages(1, AgentMessage::kInventory).size(), 1u);
  EXPECT_TRUE(messages(2, AgentMessage::kInventory).empty());
  uplink.Stop();
}

// Defect 5: bytes in flight and no ack: the stream is abandoned after the
// ack timeout and the uplink reconnects (with backoff).
TEST_F(UplinkTest, AStreamWithoutAcksIsAbandonedAfterTheAckTimeout) {
  SilentAggregator silent;  // welcomes, never acknowledges
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&silent);
  auto server = builder.BuildAndStart();
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(0, 100));
  PutStatus({"run-1-w3/ring0"});
  UplinkOptions options = Options(port);
  options.ack_timeout = absl::Seconds(1);
  Uplink uplink(options, &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return silent.chunk_bytes() > 0; }));
  const absl::Time sent = absl::Now();
  ASSERT_TRUE(
      WaitFor([&] { return uplink.stats().connects >= 2; }, absl::Seconds(6)))
      << uplink.stats().last_error;
  const absl::Duration took = absl::Now() - sent;
  EXPECT_GE(took, absl::Seconds(1));
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_GE(uplink.stats().ack_timeouts, 1u);
  uplink.Stop();
  server->Shutdown(std::chrono::system_clock::now());
}

// Keepalive must not make a server with gRPC's default ping policy drop an
// idle stream ("too_many_pings"): the connection stays up.
// An agent with no capture at all still owes the aggregator its inventory:
// an empty one, which must reach the real ingest service as an Inventory, not
// as an empty message that ends the stream.
TEST_F(UplinkTest, AnEmptyInventoryKeepsTheStream) {
  Aggregator aggregator(root_ + "/aggregator", 0);
  Uplink uplink(Options(aggregator.port()), &registry_);
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return uplink.stats().connects == 1; }));
  uplink.MarkInventorySynced();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(uplink.stats().connects, 1u) << uplink.stats().last_error;
  uplink.Stop();
}

TEST_F(UplinkTest, AnIdleStreamSurvivesKeepalivePings) {
  Aggregator aggregator(root_ + "/aggregator", 0);
  UplinkOptions options = Options(aggregator.port());
  options.keepalive_time = absl::Milliseconds(500);
  options.keepalive_timeout = absl::Milliseconds(500);
  Uplink uplink(options, &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return uplink.stats().connects == 1; }));
  absl::SleepFor(absl::Seconds(5));
  EXPECT_EQ(uplink.stats().connects, 1u) << uplink.stats().last_error;
  uplink.Stop();
}

// Defect 7: a burst rewrites a 1-file ring many times between two polls.
// Every overwritten generation counts: at least -C bytes each, and the
// served view and the aggregator show the same number.
TEST_F(UplinkTest, EveryGenerationARingBurstOverwroteIsCountedAsLost) {
  constexpr uint64_t kRotate = 20000;
  ScriptedAggregator fake;
  std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-1-w1");
  CaptureRegistry served;
  UplinkOptions options = Options(fake.port());
  options.poll_interval = absl::Seconds(2);
  options.ring_file_bytes = kRotate;
  Uplink uplink(options, &registry_, &served);
  uplink.MarkInventorySynced();
  uplink.Start();
  TcpdumpRing ring(capture_dir_ + "/" + id_ + "/run-1-w1", 1, kRotate);
  ring.Packets(10);
  PutStatus({"run-1-w1/ring"});
  auto acked = [&] {
    uint64_t n = 0;
    for (const auto& r : fake.received())
      if (r.message.has_chunk()) n += r.message.chunk().data().size();
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return acked() == ring.size(); }));

  ring.RotateTo(40);  // 40 rotations of ~20 KB in a few ms
  ring.Packets(10);
  uint64_t written = 0;
  for (uint64_t s : ring.closed_sizes()) written += s;
  written += ring.size();
  // Lost + uploaded covers every overwritten generation at -C at least,
  // never more than was written; the current one is uploaded whole.
  auto last_status = [&] {
    packetcapture::v1::Capture last;
    for (const auto& r : fake.received())
      if (r.message.has_status()) last = r.message.status();
    return last;
  };
  ASSERT_TRUE(WaitFor([&] {
    auto s = last_status();
    return s.bytes_lost() + s.bytes_uploaded() >= 40 * kRotate + ring.size();
  })) << "lost "
      << last_status().bytes_lost() << " uploaded "
      << last_status().bytes_uploaded() << " written " << written;
  const auto status = last_status();
  EXPECT_LE(status.bytes_lost() + status.bytes_uploaded(), written);
  EXPECT_EQ(status.bytes_lost(), uplink.stats().bytes_lost);
  ASSERT_TRUE(WaitFor([&] { return acked() >= ring.size(); }));
  // The agent's own view: the same bytes_lost, and the ring file's
  // generation counts the 40 reuses.
  ASSERT_TRUE(WaitFor([&] {
    auto mine = served.Get(id_);
    return mine && mine->bytes_lost() == uplink.stats().bytes_lost &&
           mine->files_size() == 1 && mine->files(0).generation() == 40;
  })) << (served.Get(id_) ? served.Get(id_)->DebugString() : "absent");
  uplink.Stop();
}

// Defect 7: the aggregator is away while a flood turns the ring: nothing is
// uploaded, and every generation that went counts (the served view shows it
// during the outage already).
TEST_F(UplinkTest, AFloodDuringAnAggregatorOutageIsCountedAsLost) {
  constexpr uint64_t kRotate = 20000;
  const std::string data_dir = root_ + "/aggregator";
  std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-1-w1");
  auto first = std::make_unique<Aggregator>(data_dir, 0);
  const int port = first->port();
  CaptureRegistry served;
  UplinkOptions options = Options(port);
  options.ring_file_bytes = kRotate;
  Uplink uplink(options, &registry_, &served);
  uplink.MarkInventorySynced();
  uplink.Start();
  TcpdumpRing ring(capture_dir_ + "/" + id_ + "/run-1-w1", 1, kRotate);
  ring.Packets(10);
  const uint64_t before = ring.size();
  PutStatus({"run-1-w1/ring"});
  ASSERT_TRUE(WaitFor([&] { return StoredBytes(*first) == before; }));

  first.reset();  // the outage
  ring.RotateTo(40);
  ring.Packets(10);
  // Generation 0 was uploaded up to `before` and then overwritten (at least
  // -C bytes); 39 more were never seen: exactly 40 * C - before.
  const uint64_t lost = 40 * kRotate - before;
  ASSERT_TRUE(WaitFor([&] {
    auto mine = served.Get(id_);
    return mine && mine->bytes_lost() == lost;
  })) << (served.Get(id_) ? served.Get(id_)->bytes_lost() : 0)
      << " want " << lost;
  EXPECT_EQ(served.Get(id_)->files(0).generation(), 40u);

  Aggregator second(data_dir, port);
  ASSERT_TRUE(WaitFor([&] {
    auto c = second.registry().Get(id_);
    return c && c->bytes_lost() == lost;
  })) << uplink.stats().last_error;
  EXPECT_EQ(uplink.stats().bytes_lost, lost);
  uplink.Stop();
}

// Defect 7, frozen aggregator: it stops reading (SIGSTOP), the agent's
// writes back up, and the ring keeps turning: the agent's own view still
// counts every generation as it goes, not only once the stream is given up.
TEST_F(UplinkTest, LossesAreCountedWhileAFrozenAggregatorReadsNothing) {
  constexpr uint64_t kRotate = 20000;
  ScriptedAggregator fake;
  absl::Notification thaw;
  fake.OnHello([&](int, const packetcapture::v1::Hello&) {
    AggregatorMessage welcome = ScriptedAggregator::Welcome();
    welcome.mutable_welcome()->set_max_inflight_bytes(64 << 20);
    welcome.mutable_welcome()->set_max_chunk_bytes(1 << 20);
    return std::vector<ScriptedAggregator::Step>{
        {absl::ZeroDuration(), welcome}};
  });
  fake.OnMessage([&](int, const AgentMessage&) {
    thaw.WaitForNotification();  // reads nothing more until thawed
    return std::vector<AggregatorMessage>();
  });
  // 8 MB waiting in one file fill the connection's windows.
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(0, 110000));
  std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-2-w1");
  PutStatus({"run-1-w3/ring0", "run-2-w1/ring"});
  CaptureRegistry served;
  UplinkOptions options = Options(fake.port());
  options.ring_file_bytes = kRotate;
  options.ack_timeout = absl::Minutes(5);  // not what this is about
  Uplink uplink(options, &registry_, &served);
  uplink.MarkInventorySynced();
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return uplink.stats().chunks_sent > 2; }));
  absl::SleepFor(absl::Milliseconds(500));  // the writes back up

  TcpdumpRing ring(capture_dir_ + "/" + id_ + "/run-2-w1", 1, kRotate);
  ring.RotateTo(20);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto mine = served.Get(id_);
        return mine && mine->bytes_lost() >= 19 * kRotate;
      },
      absl::Seconds(5)))
      << "bytes_lost " << (served.Get(id_) ? served.Get(id_)->bytes_lost() : 0)
      << " while the aggregator was frozen";
  EXPECT_EQ(uplink.stats().connects, 1u);
  thaw.Notify();
  uplink.Stop();
}

// Defect 7 across an agent restart: a new agent process must not start the
// capture's bytes_lost (or bytes_uploaded) from zero.
TEST_F(UplinkTest, CountersOfGoneGenerationsSurviveAnAgentRestart) {
  constexpr uint64_t kRotate = 20000;
  ScriptedAggregator fake;
  std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-1-w1");
  auto last_status = [&] {
    packetcapture::v1::Capture last;
    for (const auto& r : fake.received())
      if (r.message.has_status() && r.message.status().id() == id_)
        last = r.message.status();
    return last;
  };
  uint64_t lost = 0, uploaded = 0;
  {
    TcpdumpRing ring(capture_dir_ + "/" + id_ + "/run-1-w1", 1, kRotate);
    ring.Packets(10);
    PutStatus({"run-1-w1/ring"});
    UplinkOptions options = Options(fake.port());
    options.ring_file_bytes = kRotate;
    Uplink uplink(options, &registry_);
    uplink.MarkInventorySynced();
    uplink.Start();
    ASSERT_TRUE(WaitFor([&] { return last_status().bytes_uploaded() > 0; }));
    ring.RotateTo(10);
    // Every generation overwritten counts (lost, or uploaded before that).
    ASSERT_TRUE(WaitFor([&] {
      auto s = last_status();
      return s.bytes_lost() > 0 &&
             s.bytes_lost() + s.bytes_uploaded() >= 10 * kRotate;
    }));
    absl::SleepFor(absl::Milliseconds(300));
    uplink.Stop();
    lost = uplink.stats().bytes_lost;
    uploaded = last_status().bytes_uploaded();
    ASSERT_EQ(last_status().bytes_lost(), lost);
  }  // the agent process ends (tcpdump with it)

  // A new agent process: a new registry, a new uplink, the same disk.
  CaptureRegistry registry;
  auto status = atu::Status(id_, "node-a", packetcapture::v1::Capture::RUNNING);
  status.add_files()->set_name("run-1-w1/ring");
  registry.Put(status);
  CaptureRegistry served;
  UplinkOptions options = Options(fake.port());
  options.ring_file_bytes = kRotate;
  Uplink again(options, &registry, &served);
  again.MarkInventorySynced();
  again.Start();
  ASSERT_TRUE(WaitFor([&] {
    auto mine = served.Get(id_);
    return mine && mine->bytes_lost() == lost;
  })) << (served.Get(id_) ? served.Get(id_)->bytes_lost() : 0)
      << " want " << lost;
  ASSERT_TRUE(WaitFor([&] {
    return fake.connections() >= 2 && last_status().bytes_lost() == lost &&
           last_status().bytes_uploaded() >= uploaded;
  })) << last_status().bytes_lost()
      << " want " << lost << ", uploaded " << last_status().bytes_uploaded()
      << " want >= " << uploaded;
  again.Stop();
}

// Defect 9: tcpdump reuses the slot between the uplink's read of the
// generation and its read of the data: those bytes must not be sent under
// the old generation.
TEST_F(UplinkTest, ASlotReusedBetweenHeaderAndDataReadIsNotSentAsTheOld) {
  ScriptedAggregator fake;
  const std::string a = atu::PcapFile(0, 50);
  const std::string b = atu::PcapFile(1000, 80);
  ptu::WriteFile(Path("run-1-w3/ring0"), a);
  PutStatus({"run-1-w3/ring0"});
  UplinkOptions options = Options(fake.port());
  std::atomic<int> reused{0};
  const std::string path = Path("run-1-w3/ring0");
  options.before_data_read = [&](const std::string& p) {
    if (p == path && reused.fetch_add(1) == 0) ptu::WriteFile(path, b);
  };
  Uplink uplink(options, &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  // Reassemble each (file, generation) from the chunks.
  auto streams = [&] {
    std::map<uint64_t, std::string> by_generation;
    for (const auto& r : fake.received()) {
      if (!r.message.has_chunk()) continue;
      const auto& c = r.message.chunk();
      std::string& s = by_generation[c.file_generation()];
      if (c.offset() == s.size()) s += c.data();
    }
    return by_generation;
  };
  ASSERT_TRUE(WaitFor([&] {
    auto s = streams();
    auto it = s.find(GenerationOf(b));
    return it != s.end() && it->second.size() == b.size();
  }));
  EXPECT_GE(reused.load(), 1);
  for (const auto& [generation, bytes] : streams()) {
    EXPECT_EQ(GenerationOf(bytes), generation)
        << "bytes of another generation sent under " << generation;
    auto seqs = ptu::SequenceNumbers(bytes);
    ASSERT_TRUE(seqs.ok()) << seqs.status();
  }
  EXPECT_EQ(streams()[GenerationOf(b)], b);
  uplink.Stop();
}

// Defect 14: resume points come in batches after the welcome; no chunk goes
// before the last one, and every file resumes where the aggregator says.
TEST_F(UplinkTest, NoChunkIsSentBeforeTheLastResumeBatch) {
  ScriptedAggregator fake;
  const std::vector<std::string> names = {"run-1-w3/ring0", "run-1-w3/ring1",
                                          "run-1-w3/ring2"};
  std::vector<std::string> files;
  std::vector<uint64_t> resume;
  for (int i = 0; i < 3; ++i) {
    files.push_back(atu::PcapFile(i * 1000, 100));
    ptu::WriteFile(Path(names[i]), files[i]);
    resume.push_back(atu::PcapFile(i * 1000, 10 * (i + 1)).size());
  }
  PutStatus(names);
  auto point = [&](int i) {
    packetcapture::v1::ResumePoint p;
    p.set_capture_id(id_);
    p.set_file(names[i]);
    p.set_file_generation(GenerationOf(files[i]));
    p.set_offset(resume[i]);
    return p;
  };
  fake.OnHello([&](int, const packetcapture::v1::Hello&) {
    std::vector<ScriptedAggregator::Step> steps;
    AggregatorMessage welcome = ScriptedAggregator::Welcome();
    welcome.mutable_welcome()->set_more_resume(true);
    *welcome.mutable_welcome()->add_resume() = point(0);
    steps.push_back({absl::ZeroDuration(), welcome});
    AggregatorMessage batch;
    *batch.mutable_resume_batch()->add_resume() = point(1);
    steps.push_back({absl::Milliseconds(300), batch});
    AggregatorMessage last;
    *last.mutable_resume_batch()->add_resume() = point(2);
    last.mutable_resume_batch()->set_last(true);
    steps.push_back({absl::Milliseconds(300), last});
    return steps;
  });
  Uplink uplink(Options(fake.port()), &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  auto first_offsets = [&] {
    std::map<std::string, uint64_t> first;
    for (const auto& r : fake.received())
      if (r.message.has_chunk() && !first.count(r.message.chunk().file()))
        first[r.message.chunk().file()] = r.message.chunk().offset();
    return first;
  };
  ASSERT_TRUE(WaitFor([&] { return first_offsets().size() == 3; }));
  const absl::Time done = fake.script_done(1);
  for (const auto& r : fake.received()) {
    if (r.message.has_chunk()) {
      EXPECT_GE(r.at, done) << "chunk of " << r.message.chunk().file()
                            << " before the last resume batch";
    }
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(first_offsets()[names[i]], resume[i]);
  uplink.Stop();
}

// Defect 2: the aggregator refuses one capture and keeps the stream: the
// uplink stops uploading it on this connection, the node's other captures
// go on, and the next connection retries it.
TEST_F(UplinkTest, ARejectedCaptureStopsOnThisConnectionOnlyAndOthersGoOn) {
  ScriptedAggregator fake;
  const std::string other = atu::CaptureId("web-2");
  std::filesystem::create_directories(capture_dir_ + "/" + other + "/run-1-w3");
  const std::string other_path =
      absl::StrCat(capture_dir_, "/", other, "/run-1-w3/ring0");
  ptu::WriteFile(Path("run-1-w3/ring0"), atu::PcapFile(0, 100));
  ptu::WriteFile(other_path, atu::PcapFile(0, 100));
  PutStatus({"run-1-w3/ring0"});
  auto other_status = atu::Status(other, "node-a");
  other_status.add_files()->set_name("run-1-w3/ring0");
  registry_.Put(other_status);
  std::atomic<bool> rejected{false};
  fake.OnMessage([&](int connection, const AgentMessage& m) {
    std::vector<AggregatorMessage> out;
    if (!m.has_chunk()) return out;
    if (connection == 1 && m.chunk().capture_id() == id_) {
      if (!rejected.exchange(true)) {
        AggregatorMessage r;
        r.mutable_capture_rejected()->set_capture_id(id_);
        r.mutable_capture_rejected()->set_code(8);  // RESOURCE_EXHAUSTED
        r.mutable_capture_rejected()->set_message("over the byte budget");
        out.push_back(r);
      }
      return out;  // stored nothing
    }
    out.push_back(ScriptedAggregator::AckOf(m.chunk()));
    return out;
  });
  UplinkOptions options = Options(fake.port());
  options.max_chunk_bytes = 1024;  // several chunks per file
  Uplink uplink(options, &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  auto bytes_of = [&](int connection, const std::string& id) {
    uint64_t n = 0;
    for (const auto& r : fake.received())
      if (r.connection == connection && r.message.has_chunk() &&
          r.message.chunk().capture_id() == id)
        n += r.message.chunk().data().size();
    return n;
  };
  // The other capture keeps going, with more data after the rejection.
  const uint64_t size100 = atu::PcapFile(0, 100).size();
  ASSERT_TRUE(WaitFor(
      [&] { return rejected.load() && bytes_of(1, other) == size100; }));
  absl::SleepFor(absl::Milliseconds(300));  // the uplink has read it
  ptu::AppendFile(other_path, atu::Records(100, 50));
  ptu::AppendFile(Path("run-1-w3/ring0"), atu::Records(100, 50));
  ASSERT_TRUE(WaitFor(
      [&] { return bytes_of(1, other) == atu::PcapFile(0, 150).size(); }));
  absl::SleepFor(absl::Milliseconds(300));
  int late = 0;
  for (const auto& r : fake.received()) {
    if (r.connection == 1 && r.message.has_chunk() &&
        r.message.chunk().capture_id() == id_ &&
        r.message.chunk().offset() + r.message.chunk().data().size() >
            size100) {
      ++late;
    }
  }
  EXPECT_EQ(late, 0)
      << "the rejected capture was still uploaded on the same connection";
  EXPECT_EQ(uplink.stats().captures_rejected, 1u);
  // The next connection retries it.
  fake.EndStreams();
  ASSERT_TRUE(WaitFor([&] {
    return bytes_of(2, id_) == atu::PcapFile(0, 150).size();
  })) << bytes_of(2, id_);
  uplink.Stop();
}

}  // namespace
}  // namespace pc::agent
