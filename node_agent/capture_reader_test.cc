#include "node_agent/capture_reader.h"

#include <sys/stat.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/capture_layout.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"
#include "node_agent/capture.h"

namespace pc::agent {
namespace {

namespace tu = pcap::testutil;

std::string ReadAll(CaptureReader& reader) {
  std::string out;
  for (int i = 0; i < 100; ++i) {
    auto n = reader.Read(&out, 4096);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || *n == 0) break;
  }
  return out;
}

TEST(CaptureId, MadeFromTheSpecAndStartTime) {
  CaptureSpec spec;
  spec.ns = "default";
  spec.pod = "web-1.example";
  spec.uid = "0a1b2c3d-0000-4000-8000-00000000abcd";
  const std::string id =
      Capture::MakeId(spec, absl::FromUnixMillis(1764342877123));
  EXPECT_EQ(id, "default_web-1.example_0a1b2c3d_1764342877123");
  EXPECT_TRUE(IsValidCaptureId(id));
}

class CaptureReaderTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = tu::MakeTempDir(); }
  // Writes a finished one-file run holding packets [first, first+count).
  void WriteRun(int run, uint32_t first, uint32_t count, absl::Time mtime) {
    const std::string run_dir = absl::StrCat(dir_, "/", RunDirName(run, 2));
    mkdir(run_dir.c_str(), 0700);
    const std::string path = run_dir + "/ring0";
    tu::WriteFile(path, tu::MakePcapFile(header_, first, count));
    tu::SetMtime(path, mtime);
  }
  std::string dir_;
  pcap::GlobalHeader header_;
};

TEST_F(CaptureReaderTest, RunsAreOneStreamWithOneHeader) {
  const absl::Time t = absl::Now() - absl::Hours(1);
  WriteRun(1, 0, 10, t);
  WriteRun(2, 10, 5, t + absl::Seconds(1));
  CaptureReader reader(dir_, [] { return false; });
  const std::string stream = ReadAll(reader);
  auto seqs = tu::SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, tu::Range(0, 15));
  EXPECT_TRUE(reader.Done());
}

TEST_F(CaptureReaderTest, FollowPicksUpANewRunAndEndsWhenStopped) {
  std::atomic<bool> running{true};
  WriteRun(1, 0, 3, absl::Now() - absl::Seconds(10));
  CaptureReader reader(dir_, [&] { return running.load(); });
  std::string stream = ReadAll(reader);
  EXPECT_FALSE(reader.Done());
  WriteRun(2, 3, 4, absl::Now());
  stream += ReadAll(reader);
  running = false;
  EXPECT_TRUE(reader.Done());
  auto seqs = tu::SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, tu::Range(0, 7));
}

TEST_F(CaptureReaderTest, EmptyOrDeletedCaptureReadsNothing) {
  CaptureReader reader(dir_ + "/gone", [] { return false; });
  std::string out;
  auto n = reader.Read(&out, 1024);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  EXPECT_TRUE(reader.Done());
}

}  // namespace
}  // namespace pc::agent
