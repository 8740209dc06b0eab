#include "common/read_access.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace pc {

absl::StatusOr<std::string> ParseBearerToken(absl::string_view value) {
  const auto bad = absl::UnauthenticatedError(
      "the authorization metadata must be \"Bearer <token>\"");
  if (!absl::StartsWithIgnoreCase(value, "bearer ")) return bad;
  value.remove_prefix(7);
  value = absl::StripLeadingAsciiWhitespace(value);
  if (value.empty()) return bad;
  for (char c : value) {
    if (c < 0x21 || c > 0x7e) return bad;
  }
  return std::string(value);
}

}  // namespace pc
