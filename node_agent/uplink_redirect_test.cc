// The uplink with several aggregator replicas (issue 12 §5): a list of
// addresses tried in turn, and the aggregator-redirect a replica that does not
// hold the node's Lease answers a hello with (FAILED_PRECONDITION + trailing
// metadata), followed at once and only once, and ignored when it is garbage.
// The replica that holds the node is the real aggregator (TestAggregator).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "node_agent/test_aggregator.h"
#include "node_agent/uplink.h"

namespace pc::agent {
namespace {

namespace atu = aggregator::testutil;
namespace ptu = pcap::testutil;
using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;

// A replica that does not hold node-a: every hello ends with
// FAILED_PRECONDITION and `aggregator-redirect: <target>` (none when empty).
class Redirector final : public packetcapture::v1::IngestService::Service {
 public:
  explicit Redirector(std::string target) : target_(std::move(target)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~Redirector() override {
    server_->Shutdown(std::chrono::system_clock::now());
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int hellos() {
    absl::MutexLock lock(&mu_);
    return hellos_;
  }
  grpc::Status Report(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<AggregatorMessage, AgentMessage>*
                          stream) override {
    AgentMessage m;
    if (!stream->Read(&m) || !m.has_hello()) return grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      ++hellos_;
    }
    if (!target_.empty())
      context->AddTrailingMetadata("aggregator-redirect", target_);
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "node node-a is held by replica r1 at " + target_);
  }

 private:
  const std::string target_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  int hellos_ = 0;
};

// A loopback port nothing listens on.
int DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class UplinkRedirectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ptu::MakeTempDir();
    capture_dir_ = root_ + "/captures";
    std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-1-w3");
    token_file_ = root_ + "/token";
    ptu::WriteFile(token_file_, "agent-token\n");
    ptu::WriteFile(capture_dir_ + "/" + id_ + "/run-1-w3/ring0",
                   atu::PcapFile(0, 500));
    auto status =
        atu::Status(id_, "node-a", packetcapture::v1::Capture::RUNNING, 3);
    status.add_files()->set_name("run-1-w3/ring0");
    registry_.Put(status);
    holder_ = std::make_unique<testutil::TestAggregator>(root_ + "/agg", 0);
  }

  std::string Holder() const {
    return absl::StrCat("127.0.0.1:", holder_->port());
  }
  UplinkOptions Options(const std::string& aggregator, absl::Duration backoff) {
    UplinkOptions o;
    o.node = "node-a";
    o.aggregator = aggregator;
    o.token_file = token_file_;
    o.capture_dir = capture_dir_;
    o.poll_interval = absl::Milliseconds(20);
    o.initial_backoff = backoff;
    o.max_backoff = backoff;
    o.welcome_timeout = absl::Seconds(2);
    return o;
  }
  // Every byte of the file reached the replica that holds the node.
  bool Uploaded(absl::Duration timeout) {
    const uint64_t want = atu::PcapFile(0, 500).size();
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      auto c = holder_->registry().Get(id_);
      if (c && c->bytes() == want) return true;
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  std::string root_, capture_dir_, token_file_;
  const std::string id_ = atu::CaptureId("web-1");
  CaptureRegistry registry_;
  std::unique_ptr<testutil::TestAggregator> holder_;
};

TEST_F(UplinkRedirectTest, RotatesPastADeadReplica) {
  const std::string dead = absl::StrCat("127.0.0.1:", DeadPort());
  Uplink uplink(
      Options(absl::StrCat(dead, ",", Holder()), absl::Milliseconds(100)),
      &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  EXPECT_TRUE(Uploaded(absl::Seconds(10))) << uplink.stats().last_error;
  EXPECT_EQ(uplink.stats().connects, 1u);
  // The dead replica was tried first and failed.
  EXPECT_NE(uplink.stats().last_error.find(dead), std::string::npos)
      << uplink.stats().last_error;
  uplink.Stop();
}

TEST_F(UplinkRedirectTest, ARefusingReplicaWithoutRedirectIsRotatedPast) {
  Redirector refuser("");
  Uplink uplink(Options(absl::StrCat(refuser.address(), ",", Holder()),
                        absl::Milliseconds(100)),
                &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  EXPECT_TRUE(Uploaded(absl::Seconds(10))) << uplink.stats().last_error;
  EXPECT_EQ(refuser.hellos(), 1);  // tried first, once
  EXPECT_EQ(uplink.stats().redirects, 0u);
  uplink.Stop();
}

TEST_F(UplinkRedirectTest, FollowsARedirectAtOnce) {
  Redirector service(Holder());  // the Service address lands on a non-holder
  // A backoff far longer than the test: only a redirect without backoff
  // reaches the holder in time.
  Uplink uplink(Options(service.address(), absl::Seconds(60)), &registry_);
  uplink.MarkInventorySynced();
  const absl::Time start = absl::Now();
  uplink.Start();
  EXPECT_TRUE(Uploaded(absl::Seconds(10))) << uplink.stats().last_error;
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(service.hellos(), 1);
  EXPECT_EQ(uplink.stats().redirects, 1u);
  EXPECT_EQ(uplink.stats().connects, 1u);
  uplink.Stop();
}

TEST_F(UplinkRedirectTest, GarbageRedirectIsIgnored) {
  // What gRPC lets through in a metadata value; not a host:port.
  Redirector evil("evil host:1 x=\"y\" $(reboot)");
  Uplink uplink(Options(absl::StrCat(evil.address(), ",", Holder()),
                        absl::Milliseconds(100)),
                &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  EXPECT_TRUE(Uploaded(absl::Seconds(10))) << uplink.stats().last_error;
  EXPECT_EQ(uplink.stats().redirects, 0u);
  EXPECT_EQ(evil.hellos(), 1);  // then rotated to the next entry
  uplink.Stop();
}

TEST_F(UplinkRedirectTest, FollowsOnlyOneHop) {
  Redirector second(Holder());
  Redirector first(second.address());
  Uplink uplink(Options(first.address(), absl::Milliseconds(200)), &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  absl::SleepFor(absl::Milliseconds(1500));
  Uplink::Stats stats = uplink.stats();
  uplink.Stop();
  // first -> second (followed) -> holder (not followed): back to the list.
  EXPECT_EQ(stats.connects, 0u);
  EXPECT_FALSE(holder_->registry().Get(id_).has_value());
  EXPECT_GE(first.hellos(), 2);
  EXPECT_GE(second.hellos(), 2);
  EXPECT_EQ(stats.redirects, static_cast<uint64_t>(second.hellos()));
}

}  // namespace
}  // namespace pc::agent
