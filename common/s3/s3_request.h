// Turns one S3 operation (method, key, query, headers, body) into what goes on
// the wire: the URL (path-style or virtual-hosted, key and query encoded the
// way they are signed) and every header to send, Host, x-amz-date,
// x-amz-content-sha256 and Authorization included. Pure (the time is an
// argument), so the client and the botocore comparison test share it;
// thread-safe.
#ifndef COMMON_S3_S3_REQUEST_H_
#define COMMON_S3_S3_REQUEST_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/s3/s3_config.h"
#include "common/s3/sigv4.h"

namespace pc::s3 {

struct Endpoint {
  std::string scheme;  // "http" or "https"
  std::string host;    // lowercase; an IPv6 address keeps its brackets
  int port = 0;        // 0: the scheme's default
};

// "http://host[:port]" (a trailing '/' is allowed, any other path is not).
absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view url);

struct RequestSpec {
  std::string method;  // GET, PUT, HEAD, DELETE
  // The object key, not encoded; empty: the bucket itself (List, bucket
  // creation).
  std::string key;
  // Query parameters, not encoded.
  std::vector<std::pair<std::string, std::string>> query;
  // Headers to send and sign besides those PrepareRequest adds: Range,
  // If-Match, If-None-Match, Content-Type, x-amz-meta-*.
  HeaderList headers;
};

struct PreparedRequest {
  std::string url;
  // Everything to send; the values are what was signed.
  HeaderList headers;
};

// The host and port as the Host header carries them (port left out when it is
// the scheme's default), for the given bucket and addressing style.
std::string HostHeader(const Endpoint& endpoint, const std::string& bucket,
                       bool path_style);

// The request path as sent and signed: "/bucket/key" or "/key".
std::string RequestPath(const std::string& bucket, bool path_style,
                        const std::string& key);

// Signs with the body's SHA-256 (S3 then checks the body against it).
PreparedRequest PrepareRequest(const S3Config& config, const Endpoint& endpoint,
                               const RequestSpec& spec, absl::string_view body,
                               absl::Time now);

}  // namespace pc::s3

#endif  // COMMON_S3_S3_REQUEST_H_
