#include "node_agent/capture_meta.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>

#include "common/time_proto.h"
#include "gtest/gtest.h"

namespace pc::agent {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/capture_meta_test.XXXXXX";
  return mkdtemp(tmpl);
}

TEST(CaptureMeta, RoundTrip) {
  const std::string dir = TempDir();
  CaptureMeta meta;
  meta.status.set_id("default_web-1_0a1b2c3d_1");
  meta.status.set_state(packetcapture::v1::Capture::STOPPED);
  meta.status.set_stop_reason(packetcapture::v1::DURATION_REACHED);
  meta.status.mutable_options()->set_filter("icmp");
  (*meta.status.mutable_pod_labels())["app"] = "web";
  meta.limits_start = absl::FromUnixMillis(1700000000123);
  meta.packets_before_run = 42;
  meta.counted_through_run = 3;
  ASSERT_TRUE(WriteCaptureMeta(dir, meta).ok());
  auto read = ReadCaptureMeta(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->status.SerializeAsString(), meta.status.SerializeAsString());
  EXPECT_EQ(read->limits_start, meta.limits_start);
  EXPECT_EQ(read->packets_before_run, 42u);
  EXPECT_EQ(read->counted_through_run, 3);
}

// Agents before capture options wrote a bare Capture.
TEST(CaptureMeta, ReadsTheFormatBeforeOptions) {
  const std::string dir = TempDir();
  packetcapture::v1::Capture old;
  old.set_id("default_web-1_0a1b2c3d_1");
  old.set_max_files(5);
  *old.mutable_start_time() = ToProto(absl::FromUnixSeconds(1700000000));
  std::ofstream(dir + "/capture.pb", std::ios::binary)
      << old.SerializeAsString();
  auto read = ReadCaptureMeta(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->status.id(), old.id());
  EXPECT_EQ(read->status.max_files(), 5u);
  EXPECT_EQ(read->limits_start, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(read->packets_before_run, 0u);
}

TEST(CaptureMeta, MissingOrGarbageIsDataLoss) {
  const std::string dir = TempDir();
  EXPECT_EQ(ReadCaptureMeta(dir).status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(dir + "/capture.pb", std::ios::binary) << "\xff\xff\xff";
  EXPECT_EQ(ReadCaptureMeta(dir).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace pc::agent
