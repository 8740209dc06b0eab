// Fuzzes the XML reader and the S3 decoders on the bytes of an S3 answer.
// A parsed tree written back out (text escaped, then the children) must parse
// to the same tree; the decoders must not crash and must keep their bounds.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/s3/s3_xml.h"
#include "common/s3/xml_reader.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::s3::XmlElement;

void Write(const XmlElement& e, std::string* out) {
  absl::StrAppend(out, "<", e.name, ">");
  for (char c : e.text) {
    if (c == '&') {
      out->append("&amp;");
    } else if (c == '<') {
      out->append("&lt;");
    } else {
      out->push_back(c);
    }
  }
  for (const XmlElement& child : e.children) Write(child, out);
  absl::StrAppend(out, "</", e.name, ">");
}

bool Same(const XmlElement& a, const XmlElement& b) {
  if (a.name != b.name || a.text != b.text ||
      a.children.size() != b.children.size()) {
    return false;
  }
  for (size_t i = 0; i < a.children.size(); ++i) {
    if (!Same(a.children[i], b.children[i])) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto tree = pc::s3::ParseXml(input);
  if (tree.ok()) {
    std::string again;
    Write(*tree, &again);
    auto reparsed = pc::s3::ParseXml(again);
    FUZZ_CHECK(reparsed.ok(), std::string(reparsed.status().message()));
    FUZZ_CHECK(Same(*tree, *reparsed), again);
  }
  auto page = pc::s3::ParseListObjectsV2(input);
  if (page.ok()) {
    FUZZ_CHECK(tree.ok() && tree->name == "ListBucketResult", "not a list");
    // A truncated page always says where to continue.
    bool truncated = absl::AsciiStrToLower(absl::StripAsciiWhitespace(
                         tree->ChildText("IsTruncated"))) == "true";
    FUZZ_CHECK(!truncated || !page->next_token.empty(), "no token");
    FUZZ_CHECK(truncated || page->next_token.empty(), "token on last page");
  }
  pc::s3::S3ErrorInfo error = pc::s3::ParseErrorXml(input);
  FUZZ_CHECK(error.code.size() <= 64, error.code);
  FUZZ_CHECK(error.message.size() <= 200, error.message);
  for (char c : error.message) {
    FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20, "control in message");
  }
  return 0;
}
