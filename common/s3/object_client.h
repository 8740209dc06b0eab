// The object-store operations the aggregator needs, independent of the
// protocol: S3Client speaks them to an S3-compatible server; tests may use an
// in-memory implementation. Keys are relative to the client's bucket.
//
// Errors (after the implementation's own retries):
//  - NotFound: no such object (Get, Head).
//  - FailedPrecondition: a condition failed (HTTP 412): If-None-Match: * on
//    an existing key, If-Match with another ETag.
//  - PermissionDenied: refused (403); the message carries the server's code,
//    e.g. SignatureDoesNotMatch. InvalidArgument: a bad request (400).
//  - Unavailable: server errors, throttling, transport failures.
//  - DeadlineExceeded: the request took longer than the client allows.
// Messages never contain credentials or signatures.
#ifndef COMMON_S3_OBJECT_CLIENT_H_
#define COMMON_S3_OBJECT_CLIENT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pc::s3 {

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  std::string etag;
  absl::Time last_modified;
};

struct PutOptions {
  // If-None-Match: * (create only).
  bool if_none_match_any = false;
  // If-Match: <etag> (replace only that version); empty: none.
  std::string if_match;
  // User metadata, sent as x-amz-meta-<key>; keys lowercase [a-z0-9-].
  std::map<std::string, std::string> metadata;
  std::string content_type = "application/octet-stream";
};

struct GetResult {
  std::string body;
  std::string etag;
  std::map<std::string, std::string> metadata;
  // The whole object's size (also for a ranged Get).
  uint64_t object_size = 0;
};

struct ListPage {
  std::vector<ObjectInfo> objects;
  std::vector<std::string> common_prefixes;
  // Empty on the last page.
  std::string next_token;
};

// Thread-safe.
class ObjectClient {
 public:
  virtual ~ObjectClient() = default;

  // Stores `body` under `key`; returns the new object's ETag.
  virtual absl::StatusOr<std::string> Put(absl::string_view key,
                                          absl::string_view body,
                                          const PutOptions& options) = 0;
  // The object, or `length` bytes of it from `offset` (length 0: to the
  // end).
  virtual absl::StatusOr<GetResult> Get(absl::string_view key,
                                        uint64_t offset = 0,
                                        uint64_t length = 0) = 0;
  virtual absl::StatusOr<ObjectInfo> Head(absl::string_view key) = 0;
  // One page of ListObjectsV2 (keys in ascending order); max_keys <= 1000.
  virtual absl::StatusOr<ListPage> List(absl::string_view prefix,
                                        absl::string_view delimiter = "",
                                        absl::string_view continuation = "",
                                        int max_keys = 1000) = 0;
  // OK also when there was no such object.
  virtual absl::Status Delete(absl::string_view key) = 0;

  // Requests sent so far, each attempt of a retried one counted (object
  // stores bill per request), by operation: PUT, GET, HEAD, LIST, DELETE
  // (S3Client: OTHER for a bucket's creation). Operations never sent are
  // left out.
  virtual std::map<std::string, uint64_t> RequestCounts() const = 0;
};

}  // namespace pc::s3

#endif  // COMMON_S3_OBJECT_CLIENT_H_
