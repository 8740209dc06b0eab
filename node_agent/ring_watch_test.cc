#include "node_agent/ring_watch.h"

#include <atomic>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"
#include "node_agent/ring_writer_test_util.h"

namespace pc::agent {
namespace {

namespace atu = aggregator::testutil;
namespace ptu = pcap::testutil;
using testutil::TcpdumpRing;

class RingWatchTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = ptu::MakeTempDir(); }
  std::string RunDir(const std::string& run) {
    const std::string dir = absl::StrCat(root_, "/", id_, "/", run);
    std::filesystem::create_directories(dir);
    return dir;
  }
  std::string root_;
  const std::string id_ = atu::CaptureId("web-1");
};

TEST_F(RingWatchTest, CountsEveryReuseOfAOneFileRingHoweverFast) {
  const std::string dir = RunDir("run-1-w1");
  std::atomic<int> wakes{0};
  auto watch = RingWatch::Create(root_, [&] { ++wakes; });
  ASSERT_TRUE(watch.ok()) << watch.status();
  TcpdumpRing ring(dir, 1, 5000);
  ring.RotateTo(40);  // well under a millisecond per rotation
  // The watch thread reads the events and wakes its owner. (A Sync() before
  // it would read them itself, and then there is nothing left to wake for.)
  for (int i = 0; i < 100 && wakes.load() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GT(wakes.load(), 0);
  (*watch)->Sync();
  EXPECT_EQ((*watch)->Reuses(id_, "run-1-w1/ring"), 40u);
  EXPECT_EQ((*watch)->ReusedSlots(id_).size(), 1u);
  EXPECT_EQ((*watch)->overflows(), 0u);
}

TEST_F(RingWatchTest, WatchesDirectoriesCreatedAfterItStarted) {
  auto watch = RingWatch::Create(root_, nullptr);
  ASSERT_TRUE(watch.ok()) << watch.status();
  const std::string dir = RunDir("run-2-w3");
  (*watch)->Sync();  // sees the new directories and watches them
  ASSERT_TRUE((*watch)->Watching(id_, "run-2-w3"));
  TcpdumpRing ring(dir, 3, 5000);
  ring.RotateTo(10);  // generations 0..10: slots 0 and 1 got 4, slot 2 got 3
  (*watch)->Sync();
  EXPECT_EQ((*watch)->Reuses(id_, "run-2-w3/ring0"), 3u);
  EXPECT_EQ((*watch)->Reuses(id_, "run-2-w3/ring1"), 3u);
  EXPECT_EQ((*watch)->Reuses(id_, "run-2-w3/ring2"), 2u);
  (*watch)->Forget(id_);
  EXPECT_EQ((*watch)->Reuses(id_, "run-2-w3/ring0"), 0u);
}

TEST_F(RingWatchTest, FilesWrittenAndClosedInTurnAreNotReuses) {
  const std::string dir = RunDir("run-1-w3");
  auto watch = RingWatch::Create(root_, nullptr);
  ASSERT_TRUE(watch.ok()) << watch.status();
  // Appends that each close the file, a new file after them, and a name
  // that is not part of the ring: none is a reuse.
  ptu::WriteFile(dir + "/ring0", atu::PcapFile(0, 10));
  ptu::AppendFile(dir + "/ring0", atu::Records(10, 10));
  ptu::WriteFile(dir + "/ring1", atu::PcapFile(20, 10));
  ptu::AppendFile(dir + "/ring1", atu::Records(30, 10));
  ptu::WriteFile(dir + "/ring7", atu::PcapFile(0, 1));
  ptu::WriteFile(dir + "/notes", "x");
  (*watch)->Sync();
  EXPECT_TRUE((*watch)->ReusedSlots(id_).empty());
}

TEST_F(RingWatchTest, AMissingRootIsAnError) {
  auto watch = RingWatch::Create(root_ + "/missing", nullptr);
  EXPECT_FALSE(watch.ok());
}

}  // namespace
}  // namespace pc::agent
