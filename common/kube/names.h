// Validation of Kubernetes object names and escaping of URL query values, so
// that names from configuration or the API are checked before they are pasted
// into request URLs. Pure functions; thread-safe.
#ifndef COMMON_KUBE_NAMES_H_
#define COMMON_KUBE_NAMES_H_

#include <string>

#include "absl/strings/string_view.h"

namespace pc {
namespace kube {

// RFC 1123 subdomain as Kubernetes uses it (node and pod names): at most 253
// characters of [a-z0-9.-], each dot-separated label starting and ending with
// an alphanumeric.
bool IsDns1123Subdomain(absl::string_view name);

// RFC 1123 label (namespaces): at most 63 characters of [a-z0-9-], starting and
// ending with an alphanumeric.
bool IsDns1123Label(absl::string_view name);

// Percent-encodes everything except RFC 3986 unreserved characters, so the
// result is safe as a query value or a path segment.
std::string UrlEscape(absl::string_view value);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_NAMES_H_
