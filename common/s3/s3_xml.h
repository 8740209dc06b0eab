// Decoders for the XML documents an S3 server answers with: a
// ListObjectsV2 result page and the Error document of a failed request.
// Pure; thread-safe.
#ifndef COMMON_S3_S3_XML_H_
#define COMMON_S3_S3_XML_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/s3/object_client.h"

namespace pc::s3 {

// ListBucketResult: Contents (Key, Size, ETag, LastModified), CommonPrefixes
// (Prefix) and, when IsTruncated, NextContinuationToken (its absence on a
// truncated page is an error: the caller would never finish).
absl::StatusOr<ListPage> ParseListObjectsV2(absl::string_view xml);

struct S3ErrorInfo {
  std::string code;     // e.g. "SignatureDoesNotMatch"; empty if unknown
  std::string message;  // the server's Message, at most 200 bytes
};

// Best effort: an empty S3ErrorInfo for bodies that are not an S3 Error
// document. Only Code and Message are read (never StringToSign or
// SignatureProvided, which AWS includes for SignatureDoesNotMatch).
S3ErrorInfo ParseErrorXml(absl::string_view xml);

}  // namespace pc::s3

#endif  // COMMON_S3_S3_XML_H_
