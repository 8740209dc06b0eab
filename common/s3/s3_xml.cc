#include "common/s3/s3_xml.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/s3/xml_reader.h"

namespace pc::s3 {
namespace {

constexpr size_t kMaxErrorMessage = 200;

// LastModified: "2009-10-12T17:50:30.000Z" (RFC 3339).
bool ParseIsoTime(absl::string_view text, absl::Time* out) {
  std::string err;
  return absl::ParseTime(absl::RFC3339_full, absl::StripAsciiWhitespace(text),
                         out, &err);
}

}  // namespace

absl::StatusOr<ListPage> ParseListObjectsV2(absl::string_view xml) {
  auto root = ParseXml(xml);
  if (!root.ok()) return root.status();
  if (root->name != "ListBucketResult") {
    return absl::InvalidArgumentError(absl::StrCat(
        "ListObjectsV2: expected ListBucketResult, got ", root->name));
  }
  ListPage page;
  for (const XmlElement& child : root->children) {
    if (child.name == "Contents") {
      ObjectInfo info;
      const XmlElement* key = child.Child("Key");
      if (key == nullptr) {
        return absl::InvalidArgumentError(
            "ListObjectsV2: Contents without Key");
      }
      info.key = key->text;
      std::string size = child.ChildText("Size");
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(size), &info.size)) {
        return absl::InvalidArgumentError(
            absl::StrCat("ListObjectsV2: bad Size for ", info.key));
      }
      info.etag =
          std::string(absl::StripAsciiWhitespace(child.ChildText("ETag")));
      std::string modified = child.ChildText("LastModified");
      if (!modified.empty() && !ParseIsoTime(modified, &info.last_modified)) {
        return absl::InvalidArgumentError(
            absl::StrCat("ListObjectsV2: bad LastModified for ", info.key));
      }
      page.objects.push_back(std::move(info));
    } else if (child.name == "CommonPrefixes") {
      const XmlElement* prefix = child.Child("Prefix");
      if (prefix != nullptr) page.common_prefixes.push_back(prefix->text);
    }
  }
  std::string truncated = absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(root->ChildText("IsTruncated")));
  if (truncated == "true") {
    page.next_token = root->ChildText("NextContinuationToken");
    if (page.next_token.empty()) {
      return absl::InvalidArgumentError(
          "ListObjectsV2: truncated page without NextContinuationToken");
    }
  } else if (!truncated.empty() && truncated != "false") {
    return absl::InvalidArgumentError("ListObjectsV2: bad IsTruncated");
  }
  return page;
}

S3ErrorInfo ParseErrorXml(absl::string_view xml) {
  S3ErrorInfo info;
  auto root = ParseXml(xml);
  if (!root.ok() || root->name != "Error") return info;
  info.code = std::string(absl::StripAsciiWhitespace(root->ChildText("Code")));
  info.message =
      std::string(absl::StripAsciiWhitespace(root->ChildText("Message")));
  if (info.code.size() > 64) info.code.resize(64);
  if (info.message.size() > kMaxErrorMessage) {
    info.message.resize(kMaxErrorMessage);
  }
  // Codes are identifiers; anything else is not to be echoed into logs.
  for (char& c : info.code) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) c = '?';
  }
  for (char& c : info.message) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return info;
}

}  // namespace pc::s3
