#include "node_agent/subprocess.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

int WaitExit(Subprocess& p) {
  for (int i = 0; i < 500; ++i) {
    if (auto status = p.Poll()) return *status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "child did not exit within 5 s";
  return -1;
}

TEST(Subprocess, CapturesOutputAndExitStatusWithoutAShell) {
  Subprocess p;
  // The ';' would split commands in a shell; with argv it is just text.
  ASSERT_TRUE(p.Start({"/bin/echo", "hello; exit 3"}, "").ok());
  int status = WaitExit(p);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(p.ReadOutput(), "hello; exit 3\n");
  EXPECT_EQ(Subprocess::DescribeExit(status), "exited with 0");
}

TEST(Subprocess, ExecFailureIsAnErrorFromStart) {
  Subprocess p;
  auto status = p.Start({"/nonexistent/tcpdump"}, "");
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("exec"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("No such file"), absl::string_view::npos);
}

TEST(Subprocess, MissingNetworkNamespaceIsAnErrorFromStart) {
  Subprocess p;
  auto status = p.Start({"/bin/true"}, "/run/netns/does-not-exist-pc-test");
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("network namespace"), absl::string_view::npos)
      << status;
}

TEST(Subprocess, SignalStopsAndDescribes) {
  Subprocess p;
  ASSERT_TRUE(p.Start({"/bin/sleep", "30"}, "").ok());
  EXPECT_TRUE(p.running());
  ASSERT_TRUE(p.Signal(SIGTERM).ok());
  int status = WaitExit(p);
  EXPECT_EQ(Subprocess::DescribeExit(status), "killed by signal 15");
  EXPECT_FALSE(p.running());
  EXPECT_FALSE(p.Signal(SIGTERM).ok());
}

TEST(Subprocess, RelativeBinaryRefused) {
  Subprocess p;
  EXPECT_FALSE(p.Start({"sleep", "1"}, "").ok());
}

TEST(Subprocess, DestructorKillsARunningChild) {
  pid_t pid;
  {
    Subprocess p;
    ASSERT_TRUE(p.Start({"/bin/sleep", "30"}, "").ok());
    pid = p.pid();
  }
  EXPECT_NE(kill(pid, 0), 0);  // reaped: no such process
}

}  // namespace
}  // namespace pc::agent
