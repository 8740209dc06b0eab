#include "aggregator/ingest_checks.h"

#include <string>

#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

packetcapture::v1::Chunk ChunkAt(uint64_t offset, size_t size) {
  packetcapture::v1::Chunk c;
  c.set_offset(offset);
  c.set_data(std::string(size, 'x'));
  return c;
}

TEST(IngestChecksTest, ChunkBounds) {
  const uint64_t kMax = 64 << 20;
  EXPECT_TRUE(CheckChunkBounds(ChunkAt(0, 1 << 20), 1 << 20, kMax).ok());
  EXPECT_TRUE(CheckChunkBounds(ChunkAt(kMax - 10, 10), 1 << 20, kMax).ok());
  EXPECT_EQ(CheckChunkBounds(ChunkAt(0, (1 << 20) + 1), 1 << 20, kMax).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckChunkBounds(ChunkAt(kMax - 10, 11), 1 << 20, kMax).code(),
            absl::StatusCode::kInvalidArgument);
  // offset + size would wrap around to a small number.
  EXPECT_EQ(
      CheckChunkBounds(ChunkAt(~uint64_t{0} - 5, 10), 1 << 20, ~uint64_t{0})
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckChunkBounds(ChunkAt(~uint64_t{0}, 1), 1 << 20, kMax).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IngestChecksTest, StatusSize) {
  packetcapture::v1::Capture status;
  status.set_id("x");
  status.set_message(std::string(1000, 'm'));
  EXPECT_TRUE(CheckStatusSize(status, 64 << 10).ok());
  status.set_message(std::string(64 << 10, 'm'));
  EXPECT_EQ(CheckStatusSize(status, 64 << 10).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IngestChecksTest, WhichErrorsConcernOneCapture) {
  for (auto code :
       {absl::StatusCode::kInvalidArgument,
        absl::StatusCode::kFailedPrecondition,
        absl::StatusCode::kPermissionDenied, absl::StatusCode::kNotFound}) {
    EXPECT_TRUE(IsCaptureSpecific(code)) << code;
  }
  // Disk full, I/O errors, a torn commit: the store, not the capture.
  for (auto code :
       {absl::StatusCode::kInternal, absl::StatusCode::kResourceExhausted,
        absl::StatusCode::kDataLoss, absl::StatusCode::kUnknown,
        absl::StatusCode::kUnavailable}) {
    EXPECT_FALSE(IsCaptureSpecific(code)) << code;
  }
  EXPECT_EQ(CaptureKey(std::string(1000, 'a')).size(), 256u);
}

}  // namespace
}  // namespace pc::aggregator
