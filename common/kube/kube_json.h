// JSON <-> typed message conversion for Kubernetes objects, on top of
// Protobuf's JSON support (our only JSON library). Thread-safe.
#ifndef COMMON_KUBE_KUBE_JSON_H_
#define COMMON_KUBE_KUBE_JSON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace pc {
namespace kube {

// Parses `json` into `message` (cleared first), ignoring fields the message
// does not declare. InvalidArgumentError on malformed JSON or a field of the
// wrong type; never aborts.
absl::Status ParseJson(absl::string_view json,
                       google::protobuf::Message* message);

// Serializes `message` with its json_names, omitting default-valued fields.
// Strings must be valid UTF-8 (see SanitizeUtf8).
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// Returns `text` cut to at most `max_bytes` without splitting a UTF-8
// sequence, with invalid bytes replaced by '?'.
std::string SanitizeUtf8(absl::string_view text, size_t max_bytes);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_KUBE_JSON_H_
