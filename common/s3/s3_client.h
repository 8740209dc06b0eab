// ObjectClient for S3-compatible servers (AWS S3, versitygw, MinIO, Ceph
// RGW, ...): SigV4-signed requests over libcurl, path-style or
// virtual-hosted, with retries. Thread-safe; connections are reused.
//
// Each attempt is signed afresh. Retried, with jittered exponential backoff
// (initial_backoff doubling to max_backoff, each delay uniform in
// [base/2, base]), up to max_attempts: transport errors and timeouts, HTTP
// 5xx except 501, 429, and 409 ConditionalRequestConflict. Not retried: the
// other 4xx. Errors follow object_client.h; besides those, 416 (a range past
// the end) is OutOfRange, 501 Unimplemented, a response past the size
// bound ResourceExhausted. ETags are returned as the server sends them
// (quoted) and are given back the same way in PutOptions::if_match.
//
// A Put with if_none_match_any whose earlier attempt failed in transit can
// get 412 from its retry because that earlier attempt did store the object:
// the FailedPrecondition message then says so, and the caller may compare
// the stored object with what it meant to write.
#ifndef COMMON_S3_S3_CLIENT_H_
#define COMMON_S3_S3_CLIENT_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/s3/object_client.h"
#include "common/s3/s3_config.h"
#include "common/s3/s3_http.h"
#include "common/s3/s3_request.h"

namespace pc::s3 {

// The largest response body a Get or List returns.
inline constexpr size_t kMaxGetBytes = size_t{256} << 20;

class S3Client : public ObjectClient {
 public:
  // Checks the configuration (endpoint, bucket, credentials, retry
  // settings); does not contact the server.
  static absl::StatusOr<std::unique_ptr<S3Client>> Create(S3Config config);

  absl::StatusOr<std::string> Put(absl::string_view key, absl::string_view body,
                                  const PutOptions& options) override;
  absl::StatusOr<GetResult> Get(absl::string_view key, uint64_t offset = 0,
                                uint64_t length = 0) override;
  absl::StatusOr<ObjectInfo> Head(absl::string_view key) override;
  absl::StatusOr<ListPage> List(absl::string_view prefix,
                                absl::string_view delimiter = "",
                                absl::string_view continuation = "",
                                int max_keys = 1000) override;
  absl::Status Delete(absl::string_view key) override;
  std::map<std::string, uint64_t> RequestCounts() const override;

  // Creates the bucket (with the region's LocationConstraint outside
  // us-east-1); OK when this account already owns it.
  absl::Status CreateBucket();

  const S3Config& config() const { return config_; }

 private:
  // What RequestCounts() counts; kOther: bucket creation.
  enum Op { kPut, kGet, kHead, kList, kDelete, kOther, kOps };

  S3Client(S3Config config, Endpoint endpoint);

  // Sends with retries; any HTTP status that is not retried (or the last
  // one) is returned for the operation to interpret. *uncertain: an attempt
  // failed in a way that may have left its effect on the server.
  absl::StatusOr<S3Http::Response> Execute(Op op, const std::string& what,
                                           const RequestSpec& spec,
                                           absl::string_view body,
                                           size_t max_response_body,
                                           bool* uncertain);

  const S3Config config_;
  const Endpoint endpoint_;
  S3Http http_;
  std::array<std::atomic<uint64_t>, kOps> requests_{};
};

}  // namespace pc::s3

#endif  // COMMON_S3_S3_CLIENT_H_
