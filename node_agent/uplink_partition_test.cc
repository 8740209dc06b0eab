// A half-open connection to the aggregator (its node lost, a partition): the
// agent's packets go nowhere and nothing comes back, and TCP alone would
// notice after ~15 minutes while the ring overwrites data. The uplink must
// notice within seconds (ack deadline with bytes in flight, gRPC keepalive
// when idle) and reconnect once the path is back.
//
// The blackhole is an iptables DROP of the aggregator's loopback port. To
// touch no host rule, main() moves this whole test process into a network
// namespace of its own (unshare(CLONE_NEWNET), before any thread exists, so
// every gRPC thread lives there) and brings its loopback up; the rules die
// with the namespace. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): the target
// runs outside Bazel's sandbox.
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/ingest_service.h"
#include "aggregator/store.h"
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

std::string Iptables() {
  for (const char* path :
       {"/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

// Drops every packet to and from the port, both ways, or lifts that.
void Blackhole(int port, bool on) {
  const std::string iptables = Iptables();
  ASSERT_FALSE(iptables.empty()) << "no iptables binary";
  for (const char* dir : {"--dport", "--sport"}) {
    const std::string cmd =
        absl::StrCat(iptables, on ? " -I" : " -D", " INPUT -p tcp ", dir, " ",
                     port, " -j DROP");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
}

class UplinkPartitionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ptu::MakeTempDir();
    capture_dir_ = root_ + "/captures";
    std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-1-w3");
    ptu::WriteFile(root_ + "/token", "agent-token\n");
    aggregator_ =
        std::make_unique<testutil::TestAggregator>(root_ + "/aggregator", 0);
    port_ = aggregator_->port();
  }

  UplinkOptions Options() {
    UplinkOptions o;
    o.node = "node-a";
    o.aggregator = absl::StrCat("127.0.0.1:", port_);
    o.token_file = root_ + "/token";
    o.capture_dir = capture_dir_;
    o.poll_interval = absl::Milliseconds(20);
    o.initial_backoff = absl::Milliseconds(100);
    o.max_backoff = absl::Milliseconds(500);
    o.welcome_timeout = absl::Seconds(2);
    return o;
  }
  std::string Path() { return capture_dir_ + "/" + id_ + "/run-1-w3/ring0"; }
  void PutStatus() {
    auto status = atu::Status(id_, "node-a");
    status.add_files()->set_name("run-1-w3/ring0");
    registry_.Put(status);
  }
  uint64_t Stored() {
    auto c = aggregator_->registry().Get(id_);
    return c ? c->bytes() : 0;
  }
  template <typename F>
  bool WaitFor(F f, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (f()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return f();
  }

  std::string root_, capture_dir_;
  const std::string id_ = atu::CaptureId("web-1");
  CaptureRegistry registry_;
  std::unique_ptr<testutil::TestAggregator> aggregator_;
  int port_ = 0;
};

TEST_F(UplinkPartitionTest,
       BytesInFlightOnABlackholedStreamAreNoticedAndResent) {
  ptu::WriteFile(Path(), atu::PcapFile(0, 1000));
  PutStatus();
  UplinkOptions options = Options();
  options.ack_timeout = absl::Seconds(3);
  Uplink uplink(options, &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return Stored() == atu::PcapFile(0, 1000).size(); },
                      absl::Seconds(10)));

  Blackhole(port_, true);
  ptu::AppendFile(Path(), atu::Records(1000, 1000));  // bytes to send
  const absl::Time dropped = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return !uplink.stats().last_error.empty(); },
                      absl::Seconds(20)))
      << "a blackholed stream with bytes in flight went unnoticed for 20 s";
  const absl::Duration detected = absl::Now() - dropped;
  std::cout << "blackholed stream with bytes in flight abandoned after "
            << detected << ": " << uplink.stats().last_error << std::endl;
  EXPECT_LT(detected, absl::Seconds(6));
  // Still blackholed: connection attempts time out (welcome_timeout 2 s).
  absl::SleepFor(absl::Seconds(5));
  EXPECT_EQ(uplink.stats().connects, 1u);

  Blackhole(port_, false);
  const absl::Time lifted = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return Stored() == atu::PcapFile(0, 2000).size(); },
                      absl::Seconds(20)))
      << Stored() << ": " << uplink.stats().last_error;
  EXPECT_LT(absl::Now() - lifted, absl::Seconds(5));
  std::cout << "reconnected and uploaded the rest " << absl::Now() - lifted
            << " after the path came back" << std::endl;
  auto seqs = ptu::SequenceNumbers([&] {
    auto reader = aggregator_->store().OpenReader(id_, false);
    std::string out;
    for (int i = 0; reader.ok() && i < 1000; ++i) {
      auto n = (*reader)->Read(&out, 65536);
      if (!n.ok() || *n == 0) break;
    }
    return out;
  }());
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 2000));
  EXPECT_EQ(uplink.stats().bytes_lost, 0u);
  uplink.Stop();
}

TEST_F(UplinkPartitionTest, AnIdleBlackholedStreamIsNoticedByKeepalive) {
  ptu::WriteFile(Path(), atu::PcapFile(0, 100));
  PutStatus();
  UplinkOptions options = Options();
  options.keepalive_time = absl::Seconds(1);
  options.keepalive_timeout = absl::Seconds(1);
  options.ack_timeout = absl::Minutes(10);  // keepalive alone
  Uplink uplink(options, &registry_);
  uplink.MarkInventorySynced();
  uplink.Start();
  ASSERT_TRUE(WaitFor([&] { return Stored() == atu::PcapFile(0, 100).size(); },
                      absl::Seconds(10)));
  // Nothing in flight now. (gRPC sends at most two pings after the agent's
  // last data frame, so the blackhole comes right after the upload.)
  Blackhole(port_, true);
  const absl::Time dropped = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return !uplink.stats().last_error.empty(); },
                      absl::Seconds(20)))
      << "an idle blackholed stream went unnoticed for 20 s";
  const absl::Duration detected = absl::Now() - dropped;
  std::cout << "idle blackholed stream noticed after " << detected << ": "
            << uplink.stats().last_error << std::endl;
  EXPECT_LT(detected, absl::Seconds(5));
  Blackhole(port_, false);
  ASSERT_TRUE(
      WaitFor([&] { return uplink.stats().connects >= 2; }, absl::Seconds(20)));
  uplink.Stop();
}

}  // namespace
}  // namespace pc::agent

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Before any thread exists: every thread started later inherits it.
  if (unshare(CLONE_NEWNET) != 0) {
    std::cerr << "unshare(CLONE_NEWNET): " << strerror(errno)
              << " (this test needs root)" << std::endl;
    return 1;
  }
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0 ||
      (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) != 0)) {
    std::cerr << "cannot bring lo up: " << strerror(errno) << std::endl;
    return 1;
  }
  close(s);
  return RUN_ALL_TESTS();
}
