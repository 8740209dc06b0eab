// Who may read which captures: the interface CaptureService asks when a caller
// presents a bearer token (the aggregator's implementation asks the API
// server, aggregator/read_authorizer.h), and the parsing of that token.
#ifndef COMMON_READ_ACCESS_H_
#define COMMON_READ_ACCESS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pc {

// The RBAC attributes of reading captures in a namespace: a Role rule
// {apiGroups: [packetcapture.antrea.io], resources: [captures], verbs: [get]}
// grants it (RBAC needs no CRD for a resource it authorizes).
inline constexpr char kCaptureApiGroup[] = "packetcapture.antrea.io";
inline constexpr char kCaptureResource[] = "captures";
inline constexpr char kReadVerb[] = "get";

// Decides which namespaces' captures the holder of a bearer token may read.
//
// Thread-safe.
class ReadAuthorizer {
 public:
  // One answer per namespace asked, in order: true = may read.
  using Done = std::function<void(absl::StatusOr<std::vector<bool>>)>;

  virtual ~ReadAuthorizer() = default;

  // Whether the holder of `token` may read captures in each of `namespaces`
  // (none: only authenticate the token). Calls `done` exactly once, on any
  // thread, possibly before returning; `done` must not block. Errors:
  // Unauthenticated (not a valid token), Unavailable or ResourceExhausted
  // (no decision now; the caller may retry).
  virtual void CanRead(const std::string& token,
                       const std::vector<std::string>& namespaces,
                       Done done) = 0;
};

// The token of an "authorization" metadata value "Bearer <token>" (scheme
// case-insensitive, one or more spaces). UnauthenticatedError for any other
// form, an empty token, or one with bytes outside printable ASCII.
absl::StatusOr<std::string> ParseBearerToken(absl::string_view value);

}  // namespace pc

#endif  // COMMON_READ_ACCESS_H_
