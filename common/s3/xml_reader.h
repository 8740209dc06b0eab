// A small XML reader for the documents S3 answers with (ListBucketResult,
// Error): elements, text, CDATA, comments, processing instructions and the
// five predefined entities plus numeric character references. No DTDs (a
// DOCTYPE is an error, so no entity expansion), attributes are skipped,
// namespace prefixes dropped. Bounded: nesting depth and element count.
// Pure; thread-safe.
#ifndef COMMON_S3_XML_READER_H_
#define COMMON_S3_XML_READER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pc::s3 {

struct XmlElement {
  std::string name;  // local name (any "prefix:" removed)
  std::string text;  // this element's own character data, decoded, untrimmed
  std::vector<XmlElement> children;

  // The first child named `child`, or nullptr.
  const XmlElement* Child(absl::string_view child) const;
  // The first such child's text, or "" when there is none.
  std::string ChildText(absl::string_view child) const;
};

inline constexpr int kMaxXmlDepth = 32;
inline constexpr size_t kMaxXmlElements = 200000;

// The document's root element. InvalidArgument on malformed input, a DOCTYPE,
// or a document past the bounds above.
absl::StatusOr<XmlElement> ParseXml(absl::string_view document);

}  // namespace pc::s3

#endif  // COMMON_S3_XML_READER_H_
