// What an S3Client needs to reach its bucket (endpoint, region, addressing
// style, credentials, retry policy), and the two ways users give parts of it:
// a store URL "s3://BUCKET/PREFIX" and credentials from a mounted Secret or
// the environment. Plain data and pure parsing; thread-compatible.
#ifndef COMMON_S3_S3_CONFIG_H_
#define COMMON_S3_S3_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pc::s3 {

struct S3Config {
  // "http://127.0.0.1:9000" or "https://s3.eu-west-1.amazonaws.com": scheme,
  // host and optional port, no path.
  std::string endpoint;
  std::string region = "us-east-1";
  std::string bucket;
  // true: http://host/bucket/key; false: virtual-hosted http://bucket.host/key.
  bool path_style = true;
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // optional (sent as x-amz-security-token)
  // One attempt's limit (connect + transfer).
  absl::Duration request_timeout = absl::Seconds(30);
  // Attempts per operation; 5xx, 429, SlowDown and transport errors retry
  // after a jittered exponential backoff from initial_backoff to max_backoff.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // PEM CA bundle for https; empty: the system's.
  std::string ca_file;
};

// "s3://BUCKET/PREFIX" -> bucket and prefix (without leading or trailing '/',
// may be empty). The bucket must be a valid S3 bucket name.
absl::Status ParseStoreUrl(absl::string_view url, std::string* bucket,
                           std::string* prefix);

// Fills access_key, secret_key and session_token. `file_or_dir` is either a
// file of lines "access_key_id=...", "secret_access_key=...", optionally
// "session_token=..." (blank lines and '#' comments ignored; the "aws_"
// prefixed names are accepted too), or a directory holding one file per key
// (what a mounted Secret gives). Empty: the environment's AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and optional AWS_SESSION_TOKEN. Errors name the
// source and the missing key, never a value.
absl::Status LoadCredentials(const std::string& file_or_dir, S3Config* config);

}  // namespace pc::s3

#endif  // COMMON_S3_S3_CONFIG_H_
