// The uplink's batching (Welcome.batch_bytes / batch_delay_ms): the new bytes
// of a capture's newest file wait until a batch is full or old enough; a
// file the ring moved past and a stopping capture go at once. Against the
// real ingest service and store.
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/ingest_service.h"
#include "aggregator/test_util.h"
#include "common/capture_registry.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"
#include "node_agent/test_aggregator.h"
#include "node_agent/uplink.h"

namespace pc::agent {
namespace {

namespace atu = aggregator::testutil;
namespace ptu = pcap::testutil;

constexpr uint32_t kBatchBytes = 64 * 1024;

aggregator::IngestOptions Batching(uint32_t bytes, absl::Duration delay) {
  aggregator::IngestOptions ingest;
  ingest.max_inflight_bytes = 256 * 1024;
  ingest.max_chunk_bytes = 64 * 1024;
  ingest.agent_batch_bytes = bytes;
  ingest.agent_batch_delay = delay;
  return ingest;
}

class UplinkBatchingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ptu::MakeTempDir();
    capture_dir_ = root_ + "/captures";
    std::filesystem::create_directories(capture_dir_ + "/" + id_ + "/run-1-w3");
    token_file_ = root_ + "/token";
    ptu::WriteFile(token_file_, "agent-token\n");
  }

  // Starts an aggregator asking for `bytes` / `delay` and the uplink.
  void Start(uint32_t bytes, absl::Duration delay) {
    aggregator_ = std::make_unique<testutil::TestAggregator>(
        root_ + "/aggregator", 0, Batching(bytes, delay));
    UplinkOptions o;
    o.node = "node-a";
    o.aggregator = absl::StrCat("127.0.0.1:", aggregator_->port());
    o.token_file = token_file_;
    o.capture_dir = capture_dir_;
    o.poll_interval = absl::Milliseconds(20);
    o.initial_backoff = absl::Milliseconds(50);
    o.max_backoff = absl::Milliseconds(200);
    uplink_ = std::make_unique<Uplink>(o, &registry_);
    uplink_->MarkInventorySynced();
    uplink_->Start();
  }

  void TearDown() override {
    uplink_.reset();
    aggregator_.reset();
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

  uint64_t StoredBytes() {
    auto c = aggregator_->registry().Get(id_);
    return c ? c->bytes() : 0;
  }

  template <typename F>
  bool WaitFor(F f, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (f()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return f();
  }

  // Writes ring0 and appends 10 records every 50 ms for 3 s (about 46 KiB,
  // less than a batch); returns the file's size.
  uint64_t TrickleRing0() {
    std::string file = atu::PcapFile(0, 10);
    ptu::WriteFile(Path("run-1-w3/ring0"), file);
    PutStatus({"run-1-w3/ring0"});
    uint64_t size = file.size();
    for (uint32_t i = 1; i <= 60; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
      const std::string more = atu::Records(10 * i, 10);
      ptu::AppendFile(Path("run-1-w3/ring0"), more);
      size += more.size();
    }
    return size;
  }

  std::string root_, capture_dir_, token_file_;
  const std::string id_ = atu::CaptureId("web-1");
  CaptureRegistry registry_;
  std::unique_ptr<testutil::TestAggregator> aggregator_;
  std::unique_ptr<Uplink> uplink_;
};

TEST_F(UplinkBatchingTest, ASlowFileGoesInBatchesOfTheDelay) {
  Start(kBatchBytes, absl::Milliseconds(600));
  const uint64_t size = TrickleRing0();
  ASSERT_TRUE(WaitFor([&] { return StoredBytes() == size; }, absl::Seconds(5)))
      << StoredBytes() << " of " << size << ": " << uplink_->stats().last_error;
  // 3 s of trickle in batches of 0.6 s, plus the tail: not one per poll.
  EXPECT_LE(uplink_->stats().chunks_sent, 8u);
  EXPECT_GE(uplink_->stats().chunks_sent, 2u);
}

// The peer of the test above: the same trickle without batching is many
// chunks (so the bound above says something).
TEST_F(UplinkBatchingTest, WithoutBatchingTheSameFileGoesAsItGrows) {
  Start(0, absl::ZeroDuration());
  const uint64_t size = TrickleRing0();
  ASSERT_TRUE(WaitFor([&] { return StoredBytes() == size; }, absl::Seconds(5)));
  EXPECT_GE(uplink_->stats().chunks_sent, 12u);
}

TEST_F(UplinkBatchingTest, AFullBatchGoesAtOnce) {
  Start(kBatchBytes, absl::Seconds(8));
  std::string file = atu::PcapFile(0, 10);
  ptu::WriteFile(Path("run-1-w3/ring0"), file);
  PutStatus({"run-1-w3/ring0"});
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(StoredBytes(), 0u) << "a part batch went before its delay";
  const std::string more = atu::Records(10, 900);  // 68,400 bytes
  ptu::AppendFile(Path("run-1-w3/ring0"), more);
  // A batch (the chunk limit: 64 KiB) goes now; the tail past it starts the
  // next batch.
  EXPECT_TRUE(
      WaitFor([&] { return StoredBytes() >= kBatchBytes; }, absl::Seconds(4)))
      << StoredBytes() << " of " << file.size() + more.size();
}

TEST_F(UplinkBatchingTest, AFileTheRingMovedPastGoesAtOnce) {
  Start(kBatchBytes, absl::Seconds(8));
  const std::string ring0 = atu::PcapFile(0, 10);
  ptu::WriteFile(Path("run-1-w3/ring0"), ring0);
  PutStatus({"run-1-w3/ring0"});
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(StoredBytes(), 0u);
  ptu::WriteFile(Path("run-1-w3/ring1"), atu::PcapFile(10, 10));
  PutStatus({"run-1-w3/ring0", "run-1-w3/ring1"});
  // ring0 is complete: sent well before the delay; ring1 still waits.
  EXPECT_TRUE(
      WaitFor([&] { return StoredBytes() == ring0.size(); }, absl::Seconds(4)))
      << StoredBytes() << " of " << ring0.size();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(StoredBytes(), ring0.size());
}

TEST_F(UplinkBatchingTest, AStoppingCaptureGoesAtOnce) {
  Start(kBatchBytes, absl::Seconds(8));
  const std::string ring0 = atu::PcapFile(0, 10);
  ptu::WriteFile(Path("run-1-w3/ring0"), ring0);
  PutStatus({"run-1-w3/ring0"});
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(StoredBytes(), 0u);
  // The annotation was removed: the capture leaves the registry and drains.
  registry_.Remove(id_);
  EXPECT_TRUE(
      WaitFor([&] { return StoredBytes() == ring0.size(); }, absl::Seconds(4)))
      << StoredBytes() << " of " << ring0.size();
}

TEST_F(UplinkBatchingTest, TheAgentCapsTheDelayItIsAskedFor) {
  // An aggregator asking for a minute gets max_batch_delay (10 s): nothing
  // here waits that long, so only the cap's arithmetic is checked.
  Start(kBatchBytes, absl::Minutes(1));
  const std::string ring0 = atu::PcapFile(0, 10);
  ptu::WriteFile(Path("run-1-w3/ring0"), ring0);
  PutStatus({"run-1-w3/ring0"});
  EXPECT_TRUE(
      WaitFor([&] { return StoredBytes() == ring0.size(); }, absl::Seconds(14)))
      << StoredBytes() << " of " << ring0.size();
}

}  // namespace
}  // namespace pc::agent
