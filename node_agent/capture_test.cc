// Capture against real network namespaces (needs root and `ip`) and a fake
// tcpdump: a script that records the network namespace it runs in
// (readlink /proc/self/ns/net) next to the ring files it was asked to write,
// then sleeps like a capture would.
#include "node_agent/capture.h"

#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "node_agent/netns_test_util.h"

namespace pc::agent {
namespace {

using testutil::FakeProc;
using testutil::TestNetns;
using testutil::UniqueTestIp;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The pid a finder reported is reused right after the scan: its /proc entry
// now shows another process, in another namespace.
class PidReusedAfterScan : public NetnsFinder {
 public:
  PidReusedAfterScan(NetnsFinderOptions options, FakeProc* proc, int pid,
                     std::string other)
      : NetnsFinder(std::move(options)),
        proc_(proc),
        pid_(pid),
        other_(std::move(other)) {}
  absl::StatusOr<NetnsMatch> FindByIp(const std::string& ip) const override {
    auto match = NetnsFinder::FindByIp(ip);
    proc_->Point(pid_, other_);
    return match;
  }

 private:
  FakeProc* proc_;
  int pid_;
  std::string other_;
};

class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
    const char* tmp = getenv("TEST_TMPDIR");
    std::string templ =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/captureXXXXXX");
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    root_ = templ + "/captures";
    ASSERT_EQ(mkdir(root_.c_str(), 0700), 0);
    fake_tcpdump_ = templ + "/tcpdump";
    std::ofstream(fake_tcpdump_)
        << "#!/bin/sh\n"
           "args=\"$*\"; count=\n"
           "while [ $# -gt 0 ]; do\n"
           "  case $1 in -w) base=$2;; -c) count=$2;; esac; shift\n"
           "done\n"
           "echo \"$args\" > \"$base.args\"\n"
           "readlink /proc/self/ns/net > \"$base.netns.tmp\"\n"
           "mv \"$base.netns.tmp\" \"$base.netns\"\n"
           // Like tcpdump -c: exit 0 once the count is captured.
           "if [ -n \"$count\" ]; then sleep 0.2; exit 0; fi\n"
           "exec sleep 30\n";
    ASSERT_EQ(chmod(fake_tcpdump_.c_str(), 0755), 0);
    ip_ = UniqueTestIp(2);
    env_.root = root_;
    env_.node = "node-t";
    env_.tcpdump.binary = fake_tcpdump_;
    env_.stop_grace = absl::Milliseconds(500);
    spec_.ns = "default";
    spec_.pod = "web-1";
    spec_.uid = "0a1b2c3d-0000-4000-8000-00000000abcd";
    spec_.ip = ip_;
    spec_.max_files = 2;
  }

  void TearDown() override {
    if (capture_ == nullptr) return;
    capture_->BeginStop(absl::Now());
    for (int i = 0; i < 300 && !capture_->finished(); ++i) {
      capture_->Tick(absl::Now());
      usleep(10 * 1000);
    }
  }

  void StartWith(const NetnsFinder* finder) {
    env_.netns = finder;
    auto capture = Capture::Create(&env_, spec_, absl::Now());
    ASSERT_TRUE(capture.ok()) << capture.status();
    capture_ = std::move(*capture);
    capture_->Start(absl::Now());
  }

  // What the fake tcpdump of run 1 recorded, waiting up to 5 s for it.
  std::string NetnsOfRun1() {
    const std::string path =
        absl::StrCat(capture_->dir(), "/", "run-1-w2/ring.netns");
    for (int i = 0; i < 500; ++i) {
      std::string link = ReadFile(path);
      if (!link.empty()) return link.substr(0, link.find('\n'));
      usleep(10 * 1000);
    }
    return "";
  }

  std::string root_;
  std::string fake_tcpdump_;
  std::string ip_;
  CaptureEnv env_;
  CaptureSpec spec_;
  FakeProc proc_;
  std::unique_ptr<Capture> capture_;
};

TEST_F(CaptureTest, TcpdumpRunsInTheNamespaceWhereTheIpWasFound) {
  auto pod = TestNetns::Create("pod", ip_);
  ASSERT_NE(pod, nullptr);
  proc_.Point(4242, pod->path());
  NetnsFinder finder({{}, true, proc_.root()});
  StartWith(&finder);
  ASSERT_EQ(capture_->Status().state(), packetcapture::v1::Capture::RUNNING)
      << capture_->Status().message();
  EXPECT_EQ(NetnsOfRun1(), pod->Link());
}

TEST_F(CaptureTest, APidReusedBetweenScanAndStartCannotRedirectTcpdump) {
  auto pod = TestNetns::Create("pod", ip_);
  auto other = TestNetns::Create("other", UniqueTestIp(3));
  ASSERT_NE(pod, nullptr);
  ASSERT_NE(other, nullptr);
  proc_.Point(4242, pod->path());
  PidReusedAfterScan finder({{}, true, proc_.root()}, &proc_, 4242,
                            other->path());
  StartWith(&finder);
  // Reopening /proc/4242/ns/net at exec would enter the other pod's
  // namespace; the capture must record this pod or nothing.
  if (capture_->Status().state() == packetcapture::v1::Capture::RUNNING) {
    EXPECT_EQ(NetnsOfRun1(), pod->Link())
        << "tcpdump entered " << other->Link() << " = the other namespace";
  } else {
    EXPECT_NE(capture_->Status().message(), "") << "not started, no reason";
    EXPECT_EQ(NetnsOfRun1(), "");
  }
}

TEST_F(CaptureTest, AnIpHeldByTwoNamespacesFailsTheCaptureWithTheReason) {
  auto pod = TestNetns::Create("pod", ip_);
  auto twin = TestNetns::Create("twin", ip_);
  ASSERT_NE(pod, nullptr);
  ASSERT_NE(twin, nullptr);
  proc_.Point(100, pod->path());
  proc_.Point(200, twin->path());
  NetnsFinder finder({{}, true, proc_.root()});
  StartWith(&finder);
  const auto status = capture_->Status();
  EXPECT_EQ(status.state(), packetcapture::v1::Capture::FAILED)
      << status.message();
  EXPECT_NE(status.message().find("ambiguous"), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find(proc_.root() + "/200/ns/net"),
            std::string::npos)
      << status.message();
  struct stat st;
  EXPECT_NE(stat(absl::StrCat(capture_->dir(), "/run-1-w2").c_str(), &st), 0)
      << "a run was started";
  // A Warning Event says why.
  bool warned = false;
  for (const auto& note : capture_->TakeNotes()) {
    warned |= note.warning && note.reason == "CaptureFailed";
  }
  EXPECT_TRUE(warned);
}

bool HasNote(Capture* capture, const std::string& reason) {
  bool found = false;
  for (const auto& note : capture->TakeNotes()) found |= note.reason == reason;
  return found;
}

// Ticks until the capture leaves RUNNING/PENDING or 5 s pass.
void TickUntilStopped(Capture* capture) {
  for (int i = 0; i < 500; ++i) {
    capture->Tick(absl::Now());
    const auto state = capture->Status().state();
    if (state == packetcapture::v1::Capture::STOPPED ||
        state == packetcapture::v1::Capture::FAILED) {
      return;
    }
    usleep(10 * 1000);
  }
}

TEST_F(CaptureTest, OptionsReachTcpdumpAsArguments) {
  auto pod = TestNetns::Create("pod", ip_);
  ASSERT_NE(pod, nullptr);
  proc_.Point(4242, pod->path());
  NetnsFinder finder({{}, true, proc_.root()});
  spec_.options.filter = "icmp or udp port 53";
  spec_.options.snaplen = 96;
  spec_.labels = {{"app", "web"}};
  StartWith(&finder);
  ASSERT_EQ(NetnsOfRun1(), pod->Link());
  const std::string args =
      ReadFile(absl::StrCat(capture_->dir(), "/run-1-w2/ring.args"));
  EXPECT_NE(args.find(" -s 96 "), std::string::npos) << args;
  EXPECT_NE(args.find(" -- icmp or udp port 53\n"), std::string::npos) << args;
  const auto status = capture_->Status();
  EXPECT_EQ(status.options().filter(), "icmp or udp port 53");
  EXPECT_EQ(status.options().snaplen(), 96u);
  EXPECT_EQ(status.pod_labels().at("app"), "web");
  EXPECT_NE(status.message().find("options: filter \"icmp or udp port 53\", "
                                  "snaplen 96"),
            std::string::npos)
      << status.message();
}

TEST_F(CaptureTest, DurationReachedStopsForGoodAndKeepsTheFiles) {
  auto pod = TestNetns::Create("pod", ip_);
  ASSERT_NE(pod, nullptr);
  proc_.Point(4242, pod->path());
  NetnsFinder finder({{}, true, proc_.root()});
  spec_.options.duration = absl::Seconds(1);
  StartWith(&finder);
  ASSERT_EQ(NetnsOfRun1(), pod->Link());
  EXPECT_LE(capture_->NextDeadline(), absl::Now() + absl::Seconds(1));
  TickUntilStopped(capture_.get());
  auto status = capture_->Status();
  EXPECT_EQ(status.state(), packetcapture::v1::Capture::STOPPED)
      << status.message();
  EXPECT_EQ(status.stop_reason(), packetcapture::v1::DURATION_REACHED);
  EXPECT_NE(status.message().find("duration 1s reached"), std::string::npos)
      << status.message();
  EXPECT_TRUE(capture_->limit_reached());
  EXPECT_FALSE(capture_->idle());
  EXPECT_TRUE(HasNote(capture_.get(), "CaptureStopped"));
  struct stat st;
  EXPECT_EQ(
      stat(absl::StrCat(capture_->dir(), "/run-1-w2/ring.netns").c_str(), &st),
      0)
      << "files deleted";
  // Still stopped a second later: no restart.
  for (int i = 0; i < 20; ++i) {
    capture_->Tick(absl::Now());
    usleep(50 * 1000);
  }
  EXPECT_EQ(capture_->Status().state(), packetcapture::v1::Capture::STOPPED);

  // A restarted agent finds it stopped, with its reason.
  auto recovered = Capture::Recover(&env_, capture_->id());
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_TRUE((*recovered)->limit_reached());
  EXPECT_FALSE((*recovered)->idle());
  EXPECT_EQ((*recovered)->Status().state(),
            packetcapture::v1::Capture::STOPPED);
  EXPECT_EQ((*recovered)->Status().stop_reason(),
            packetcapture::v1::DURATION_REACHED);
  EXPECT_EQ((*recovered)->spec().options.duration, absl::Seconds(1));
  recovered->reset();

  // A changed option is a new run with fresh limits.
  CaptureSpec longer = spec_;
  longer.options.duration = absl::Hours(1);
  capture_->Restart(longer, absl::Now());
  status = capture_->Status();
  EXPECT_EQ(status.state(), packetcapture::v1::Capture::RUNNING)
      << status.message();
  EXPECT_EQ(status.stop_reason(), packetcapture::v1::STOP_REASON_UNSPECIFIED);
  EXPECT_FALSE(capture_->limit_reached());
}

TEST_F(CaptureTest, MaxPacketsReachedWhenTcpdumpsCountEnds) {
  auto pod = TestNetns::Create("pod", ip_);
  ASSERT_NE(pod, nullptr);
  proc_.Point(4242, pod->path());
  NetnsFinder finder({{}, true, proc_.root()});
  spec_.options.max_packets = 10;
  StartWith(&finder);
  ASSERT_EQ(NetnsOfRun1(), pod->Link());
  const std::string args =
      ReadFile(absl::StrCat(capture_->dir(), "/run-1-w2/ring.args"));
  EXPECT_NE(args.find(" -c 10 "), std::string::npos) << args;
  TickUntilStopped(capture_.get());
  const auto status = capture_->Status();
  EXPECT_EQ(status.state(), packetcapture::v1::Capture::STOPPED)
      << status.message();
  EXPECT_EQ(status.stop_reason(), packetcapture::v1::MAX_PACKETS_REACHED);
  EXPECT_NE(status.message().find("max-packets 10 reached"), std::string::npos)
      << status.message();
  EXPECT_EQ(status.restarts(), 0u);
  auto recovered = Capture::Recover(&env_, capture_->id());
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_TRUE((*recovered)->limit_reached());
}

// tcpdump writes nothing and says nothing when its volume is full: a ring
// that cannot fit must be refused before it starts, with the reason.
class SmallVolumeTest : public CaptureTest {
 protected:
  void MountTmpfs(const std::string& size) {
    ASSERT_EQ(
        system(absl::StrCat("mount -t tmpfs -o size=", size, " tmpfs ", root_)
                   .c_str()),
        0);
    mounted_ = true;
  }
  void TearDown() override {
    CaptureTest::TearDown();
    capture_.reset();
    if (mounted_) umount2(root_.c_str(), MNT_DETACH);
  }
  bool mounted_ = false;
};

TEST_F(SmallVolumeTest, ARingThatCannotFitFailsWithTheReason) {
  MountTmpfs("1536k");
  auto pod = TestNetns::Create("pod", ip_);
  ASSERT_NE(pod, nullptr);
  proc_.Point(4242, pod->path());
  NetnsFinder finder({{}, true, proc_.root()});
  spec_.max_files = 3;
  StartWith(&finder);
  const auto status = capture_->Status();
  EXPECT_EQ(status.state(), packetcapture::v1::Capture::FAILED)
      << status.message();
  EXPECT_NE(status.message().find("free on the capture volume"),
            std::string::npos)
      << status.message();
  EXPECT_EQ(NetnsOfRun1(), "") << "tcpdump started anyway";
}

TEST_F(SmallVolumeTest, ARingThatFitsStarts) {
  MountTmpfs("8m");
  auto pod = TestNetns::Create("pod", ip_);
  ASSERT_NE(pod, nullptr);
  proc_.Point(4242, pod->path());
  NetnsFinder finder({{}, true, proc_.root()});
  spec_.max_files = 3;
  StartWith(&finder);
  EXPECT_EQ(capture_->Status().state(), packetcapture::v1::Capture::RUNNING)
      << capture_->Status().message();
}

}  // namespace
}  // namespace pc::agent
