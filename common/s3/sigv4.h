// AWS Signature Version 4 for S3 requests (header-based, single-chunk
// payload), as a pure function of the request so it can be checked against
// AWS's published examples and botocore's signer. Stateless; thread-safe.
//
// S3 rules: the canonical URI is the request path as sent (already encoded,
// never normalized or encoded twice); query names and values are encoded
// per RFC 3986 (unreserved characters only stay), sorted by encoded name
// then value, and kept when empty ("name="); every header given is signed,
// its name lowercased and its value trimmed with inner runs of whitespace
// collapsed to one space.
#ifndef COMMON_S3_SIGV4_H_
#define COMMON_S3_SIGV4_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pc::s3 {

// The payload hash S3 accepts instead of the body's SHA-256.
inline constexpr char kUnsignedPayload[] = "UNSIGNED-PAYLOAD";

struct SigV4Credentials {
  std::string access_key;
  std::string secret_key;
  // Sent as x-amz-security-token (the caller adds that header); empty: none.
  std::string session_token;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct SigV4Request {
  std::string method;  // "GET", "PUT", ...
  // The path exactly as it goes on the wire, e.g. "/bucket/a%20b/c" ("/" for
  // the root).
  std::string canonical_uri;
  // Query parameters, not encoded; an empty value is kept as "name=".
  std::vector<std::pair<std::string, std::string>> query;
  // The headers to sign, as sent: must include host, x-amz-date and (for S3)
  // x-amz-content-sha256. A name given twice is signed as "v1,v2".
  HeaderList headers;
  // Lowercase hex SHA-256 of the body, or kUnsignedPayload.
  std::string payload_hash;
};

// RFC 3986 percent-encoding with uppercase hex: A-Z a-z 0-9 - . _ ~ stay,
// and '/' stays too when `keep_slash` (object keys in the path).
std::string UriEncode(absl::string_view in, bool keep_slash);

// "name=value&..." with both encoded, sorted by encoded name then value. The
// same string serves as the URL's query, so what is signed is what is sent.
std::string CanonicalQueryString(
    const std::vector<std::pair<std::string, std::string>>& query);

// 20130524T000000Z (UTC), the x-amz-date value.
std::string AmzDate(absl::Time time);

// Lowercase hex of SHA-256(data).
std::string Sha256Hex(absl::string_view data);

// The canonical request (the first step, exposed for tests and debugging);
// *signed_headers receives "host;x-amz-date;...".
std::string CanonicalRequest(const SigV4Request& request,
                             std::string* signed_headers);

// The Authorization header's value:
// "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,
//  SignedHeaders=...,Signature=<64 hex>".
std::string SigV4Authorization(const SigV4Request& request, absl::Time time,
                               const SigV4Credentials& credentials,
                               absl::string_view region,
                               absl::string_view service);

}  // namespace pc::s3

#endif  // COMMON_S3_SIGV4_H_
