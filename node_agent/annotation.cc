#include "node_agent/annotation.h"

#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace pc::agent {
namespace {

// Long enough to show what the user wrote, short enough for an Event.
std::string Quote(absl::string_view value) {
  return QuoteAnnotationValue(value);
}

}  // namespace

std::string QuoteAnnotationValue(absl::string_view value, size_t max) {
  std::string shown(value.substr(0, max));
  for (char& c : shown) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) c = '?';
  }
  if (value.size() > max) shown += "...";
  return absl::StrCat("\"", shown, "\"");
}

absl::StatusOr<int> ParseMaxFiles(absl::string_view value, int max_files) {
  const std::string expected =
      absl::StrCat("expected a whole number of files from 1 to ", max_files);
  if (value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kCaptureAnnotation, " is empty: ", expected));
  }
  // Digits only: rejects signs, spaces, "5.0", "1e3" and hex before any
  // conversion can reinterpret them.
  for (char c : value) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat(
          kCaptureAnnotation, "=", Quote(value), " is not valid: ", expected));
    }
  }
  if (value[0] == '0') {
    return absl::InvalidArgumentError(absl::StrCat(
        kCaptureAnnotation, "=", Quote(value), " is not valid: ", expected));
  }
  // More digits than max_files has cannot be in range.
  if (value.size() > std::to_string(max_files).size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kCaptureAnnotation, "=", Quote(value), " is too large: ", expected));
  }
  // At most ten digits here: int64_t holds them even when max_files is near
  // INT_MAX.
  int64_t n = 0;
  for (char c : value) n = n * 10 + (c - '0');
  if (n > max_files) {
    return absl::InvalidArgumentError(absl::StrCat(
        kCaptureAnnotation, "=", Quote(value), " is too large: ", expected));
  }
  return static_cast<int>(n);
}

}  // namespace pc::agent
