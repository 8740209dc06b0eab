#include "aggregator/store_factory.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "common/capture_registry.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

TEST(IsObjectStoreUrlTest, OnlyTheS3SchemeNamesTheObjectStore) {
  EXPECT_TRUE(IsObjectStoreUrl("s3://bucket/prefix"));
  EXPECT_TRUE(IsObjectStoreUrl("s3://bucket"));
  EXPECT_FALSE(IsObjectStoreUrl("dir:///data"));
  EXPECT_FALSE(IsObjectStoreUrl("S3://bucket/prefix"));
  EXPECT_FALSE(IsObjectStoreUrl("/data/s3://bucket"));
  EXPECT_FALSE(IsObjectStoreUrl(""));
}

// OpenCaptureStore's error for `url` with nothing else configured.
absl::Status OpenError(const std::string& url) {
  CaptureRegistry registry;
  StoreConfig config;
  config.url = url;
  return OpenCaptureStore(config, &registry).status();
}

// OpenCaptureStore takes the object-store path for exactly the URLs
// IsObjectStoreUrl accepts: its first check there is the endpoint.
TEST(OpenCaptureStoreTest, ObjectStoreUrlWithoutEndpointIsRefused) {
  const absl::Status error = OpenError("s3://bucket/prefix");
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(error.message(), "--s3_endpoint")) << error;
}

TEST(OpenCaptureStoreTest, OtherSchemeIsRefused) {
  const absl::Status error = OpenError("S3://bucket/prefix");
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(error.message(), "expected dir://")) << error;
}

}  // namespace
}  // namespace pc::aggregator
