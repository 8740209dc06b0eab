// Uses real network namespaces (needs root and `ip`); addresses come from
// 198.18.0.0/15 and nothing is routed anywhere.
#include "node_agent/netns_finder.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pc::agent {
namespace {

int Shell(const std::string& cmd) { return system(cmd.c_str()); }

class NetnsFinderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
    name_ = absl::StrCat("pcnf", getpid());
    ASSERT_EQ(Shell("ip netns add " + name_), 0);
    ASSERT_EQ(Shell(absl::StrCat(
                  "ip -n ", name_,
                  " link add pcdummy0 type veth peer name pcdummy1 && ip -n ",
                  name_, " addr add 198.18.250.7/32 dev pcdummy0 && ip -n ",
                  name_, " link set pcdummy0 up")),
              0);
  }
  void TearDown() override {
    if (!name_.empty()) Shell("ip netns del " + name_);
  }
  std::string name_;
};

TEST_F(NetnsFinderTest, FindsTheNamespaceAndInterfaceHoldingTheIp) {
  NetnsFinder finder({{"/run/netns"}, false, "/proc"});
  auto match = finder.FindByIp("198.18.250.7");
  ASSERT_TRUE(match.ok()) << match.status();
  EXPECT_EQ(match->path, "/run/netns/" + name_);
  EXPECT_EQ(match->interface, "pcdummy0");
}

TEST_F(NetnsFinderTest, UnknownIpIsNotFoundAndSaysWhereItLooked) {
  NetnsFinder finder({{"/run/netns", "/nonexistent"}, false, "/proc"});
  auto match = finder.FindByIp("198.18.250.8");
  ASSERT_FALSE(match.ok());
  EXPECT_EQ(match.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(match.status().message().find("/run/netns"),
            absl::string_view::npos);
}

TEST_F(NetnsFinderTest, ProcScanFindsNamespacesOfProcesses) {
  // No named namespace dirs: only a process living in the namespace shows it.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    execlp("ip", "ip", "netns", "exec", name_.c_str(), "sleep", "5",
           (char*)nullptr);
    _exit(1);
  }
  usleep(300 * 1000);
  NetnsFinder finder({{}, true, "/proc"});
  auto match = finder.FindByIp("198.18.250.7");
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(match.ok()) << match.status();
  EXPECT_EQ(match->interface, "pcdummy0");
}

TEST(NetnsFinder, RejectsNonAddresses) {
  NetnsFinder finder({});
  auto match = finder.FindByIp("not-an-ip");
  ASSERT_FALSE(match.ok());
  EXPECT_EQ(match.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pc::agent
