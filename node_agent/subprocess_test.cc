#include "node_agent/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
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
  ASSERT_TRUE(p.Start({"/bin/echo", "hello; exit 3"}).ok());
  int status = WaitExit(p);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(p.ReadOutput(), "hello; exit 3\n");
  EXPECT_EQ(Subprocess::DescribeExit(status), "exited with 0");
}

TEST(Subprocess, ExecFailureIsAnErrorFromStart) {
  Subprocess p;
  auto status = p.Start({"/nonexistent/tcpdump"});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("exec"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("No such file"), absl::string_view::npos);
}

// The agent's own network namespace, open, with its identity.
struct OwnNetns {
  OwnNetns() {
    fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0) {
      target = ChildNetns{fd, static_cast<uint64_t>(st.st_dev),
                          static_cast<uint64_t>(st.st_ino)};
    }
  }
  ~OwnNetns() {
    if (fd >= 0) close(fd);
  }
  int fd = -1;
  ChildNetns target;
};

TEST(Subprocess, JoinsTheNamespaceThroughTheDescriptor) {
  OwnNetns own;
  ASSERT_GE(own.fd, 0);
  Subprocess p;
  auto status = p.Start({"/usr/bin/readlink", "/proc/self/ns/net"}, own.target);
  ASSERT_TRUE(status.ok()) << status;
  WaitExit(p);
  EXPECT_EQ(p.ReadOutput(), absl::StrCat("net:[", own.target.ino, "]\n"));
}

TEST(Subprocess, ANamespaceOtherThanTheOneExpectedRunsNothing) {
  OwnNetns own;
  ASSERT_GE(own.fd, 0);
  ChildNetns wrong = own.target;
  wrong.ino += 1;  // what was found is not what the descriptor holds
  const char* tmp = getenv("TEST_TMPDIR");
  const std::string marker =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/ran-", getpid());
  Subprocess p;
  auto status = p.Start({"/usr/bin/touch", marker}, wrong);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("network namespace changed"),
            absl::string_view::npos)
      << status;
  EXPECT_NE(status.message().find(absl::StrCat("net:[", wrong.ino, "]")),
            absl::string_view::npos)
      << status;
  EXPECT_NE(access(marker.c_str(), F_OK), 0) << "the child ran";
  EXPECT_FALSE(p.running());
}

TEST(Subprocess, ADescriptorThatIsNoNamespaceIsAnErrorFromStart) {
  Subprocess p;
  EXPECT_EQ(p.Start({"/bin/true"}, ChildNetns{-1, 0, 0}).code(),
            absl::StatusCode::kInvalidArgument);
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto status = p.Start({"/bin/true"}, ChildNetns{fd, 0, 0});
  close(fd);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("enter network namespace"),
            absl::string_view::npos)
      << status;
}

TEST(Subprocess, SignalStopsAndDescribes) {
  Subprocess p;
  ASSERT_TRUE(p.Start({"/bin/sleep", "30"}).ok());
  EXPECT_TRUE(p.running());
  ASSERT_TRUE(p.Signal(SIGTERM).ok());
  int status = WaitExit(p);
  EXPECT_EQ(Subprocess::DescribeExit(status), "killed by signal 15");
  EXPECT_FALSE(p.running());
  EXPECT_FALSE(p.Signal(SIGTERM).ok());
}

TEST(Subprocess, RelativeBinaryRefused) {
  Subprocess p;
  EXPECT_FALSE(p.Start({"sleep", "1"}).ok());
}

TEST(Subprocess, DestructorKillsARunningChild) {
  pid_t pid;
  {
    Subprocess p;
    ASSERT_TRUE(p.Start({"/bin/sleep", "30"}).ok());
    pid = p.pid();
  }
  EXPECT_NE(kill(pid, 0), 0);  // reaped: no such process
}

}  // namespace
}  // namespace pc::agent
