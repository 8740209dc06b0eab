// Uses real network namespaces (needs root and `ip`); addresses come from
// 198.18.240.0/20 and nothing is routed anywhere. Most tests scan a fake
// /proc view (symlinks to their own namespaces), so namespaces of other
// processes on the machine cannot take part.
#include "node_agent/netns_finder.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node_agent/netns_test_util.h"

namespace pc::agent {
namespace {

using testutil::FakeProc;
using testutil::TestNetns;
using testutil::UniqueTestIp;

bool Contains(absl::string_view text, absl::string_view part) {
  return text.find(part) != absl::string_view::npos;
}

class NetnsFinderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
    ip_ = UniqueTestIp(0);
    a_ = TestNetns::Create("a", ip_);
    ASSERT_NE(a_, nullptr);
  }
  // Only the fake /proc view, no namespace directory.
  NetnsFinder ViewFinder() const {
    return NetnsFinder({{}, true, proc_.root()});
  }
  std::string ip_;
  std::unique_ptr<TestNetns> a_;
  FakeProc proc_;
};

TEST_F(NetnsFinderTest, FindsTheNamespaceAndInterfaceHoldingTheIp) {
  NetnsFinder finder({{"/run/netns"}, false, "/proc"});
  auto match = finder.FindByIp(ip_);
  ASSERT_TRUE(match.ok()) << match.status();
  EXPECT_EQ(match->path, a_->path());
  EXPECT_EQ(match->interface, "pcdummy0");
}

TEST_F(NetnsFinderTest, UnknownIpIsNotFoundAndSaysWhereItLooked) {
  NetnsFinder finder({{"/run/netns", "/nonexistent"}, false, "/proc"});
  auto match = finder.FindByIp(UniqueTestIp(1));
  ASSERT_FALSE(match.ok());
  EXPECT_EQ(match.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(match.status().message(), "/run/netns"));
}

TEST_F(NetnsFinderTest, ProcScanFindsNamespacesOfProcesses) {
  // No named namespace dirs: only a process living in the namespace shows it.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    execlp("ip", "ip", "netns", "exec", a_->name().c_str(), "sleep", "5",
           (char*)nullptr);
    _exit(1);
  }
  usleep(300 * 1000);
  NetnsFinder finder({{}, true, "/proc"});
  auto match = finder.FindByIp(ip_);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(match.ok()) << match.status();
  EXPECT_EQ(match->interface, "pcdummy0");
}

TEST_F(NetnsFinderTest, OneNamespaceUnderManyNamesIsNotAmbiguous) {
  // Every process of a pod shows the pod's namespace, and so does its
  // /run/netns file: one namespace, however many names.
  proc_.Point(100, a_->path());
  proc_.Point(101, a_->path());
  proc_.Point(102, a_->path());
  NetnsFinder finder({{"/run/netns"}, true, proc_.root()});
  auto match = finder.FindByIp(ip_);
  ASSERT_TRUE(match.ok()) << match.status();
  EXPECT_EQ(match->interface, "pcdummy0");
}

TEST_F(NetnsFinderTest, AnIpInTwoNamespacesIsAmbiguousNeverAGuess) {
  // Overlapping pod IPs (another network, a namespace not yet torn down):
  // picking the first would record another pod's traffic under this pod.
  auto b = TestNetns::Create("b", ip_);
  ASSERT_NE(b, nullptr);
  proc_.Point(100, a_->path());
  proc_.Point(200, b->path());
  auto match = ViewFinder().FindByIp(ip_);
  ASSERT_FALSE(match.ok()) << "chose " << match->path;
  EXPECT_EQ(match.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(match.status().message());
  EXPECT_TRUE(Contains(message, "ambiguous")) << message;
  EXPECT_TRUE(Contains(message, proc_.root() + "/100/ns/net")) << message;
  EXPECT_TRUE(Contains(message, proc_.root() + "/200/ns/net")) << message;
}

TEST_F(NetnsFinderTest, TheMatchHoldsTheNamespaceExaminedNotItsPath) {
  auto other = TestNetns::Create("other", UniqueTestIp(1));
  ASSERT_NE(other, nullptr);
  proc_.Point(100, a_->path());
  auto match = ViewFinder().FindByIp(ip_);
  ASSERT_TRUE(match.ok()) << match.status();
  // Pid 100 exits and is reused by a process of another namespace.
  proc_.Point(100, other->path());
  EXPECT_EQ(match->netns.id().ToString(), a_->Link());
  auto addrs = NetnsFinder::ListAddresses(match->netns);
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  bool holds = false;
  for (const auto& [ifname, addr] : *addrs) holds |= addr == ip_;
  EXPECT_TRUE(holds) << "entered another namespace than the one examined";
}

TEST_F(NetnsFinderTest, AFileThatIsNoNamespaceIsSkipped) {
  // ip netns del can leave an empty file behind in /run/netns.
  const std::string plain = proc_.root() + "/plain";
  FILE* f = fopen(plain.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  EXPECT_EQ(NetnsHandle::Open(plain).status().code(),
            absl::StatusCode::kFailedPrecondition);
  proc_.Point(100, plain);
  proc_.Point(101, a_->path());
  auto match = ViewFinder().FindByIp(ip_);
  ASSERT_TRUE(match.ok()) << match.status();
  EXPECT_EQ(match->path, proc_.root() + "/101/ns/net");
}

TEST(NetnsFinder, RejectsNonAddresses) {
  NetnsFinder finder({});
  auto match = finder.FindByIp("not-an-ip");
  ASSERT_FALSE(match.ok());
  EXPECT_EQ(match.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pc::agent
