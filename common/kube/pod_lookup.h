// One Pod by namespace and name (GET /api/v1/namespaces/<ns>/pods/<name>),
// e.g. for the aggregator to learn the node of the pod an agent's token is
// bound to. Free function; thread-safe (HttpClient is).
#ifndef COMMON_KUBE_POD_LOOKUP_H_
#define COMMON_KUBE_POD_LOOKUP_H_

#include <atomic>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kube/http_client.h"
#include "common/kube/kube_types.pb.h"

namespace pc {
namespace kube {

// InvalidArgumentError for a namespace or name that is not a valid object
// name (nothing is sent); HttpError for a non-200 answer (404 NotFound, 403
// PermissionDenied, ...; see HttpCodeFromStatus); UnavailableError for
// transport failures; InvalidArgumentError for a body that is not a Pod.
absl::StatusOr<Pod> GetPod(HttpClient& client, absl::string_view ns,
                           absl::string_view name,
                           const std::atomic<bool>* cancel = nullptr);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_POD_LOOKUP_H_
