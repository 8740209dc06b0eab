// Parses the value of the tcpdump.antrea.io Pod annotation: the number of
// rotated 1 MB files to keep. Pure function, thread-safe.
#ifndef NODE_AGENT_ANNOTATION_H_
#define NODE_AGENT_ANNOTATION_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pc::agent {

inline constexpr char kCaptureAnnotation[] = "tcpdump.antrea.io";

// Returns N for a decimal integer from 1 to max_files written without sign,
// spaces, leading zeros or fraction ("5"). Anything else ("", "0", "-1",
// "5.0", "abc", "007", too large) is InvalidArgument with a message a user can
// act on, quoting the value.
absl::StatusOr<int> ParseMaxFiles(absl::string_view value, int max_files);

// `value` in double quotes for a message: at most `max` bytes of it, then
// "...", every unprintable byte shown as '?'.
std::string QuoteAnnotationValue(absl::string_view value, size_t max = 32);

}  // namespace pc::agent

#endif  // NODE_AGENT_ANNOTATION_H_
