// Asks the API server whether a user may do something (SubjectAccessReview),
// for the aggregator to authorize readers of captures with the cluster's own
// RBAC. Free functions; thread-safe (HttpClient is).
#ifndef COMMON_KUBE_SUBJECT_ACCESS_REVIEW_H_
#define COMMON_KUBE_SUBJECT_ACCESS_REVIEW_H_

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kube/http_client.h"

namespace pc {
namespace kube {

// spec.resourceAttributes plus the user as TokenReview described it.
struct AccessReviewRequest {
  std::string namespace_;  // empty: cluster-wide
  std::string verb;
  std::string group;  // API group; RBAC matches any name, no CRD needed
  std::string resource;
  std::string name;  // empty: any object
  std::string user;
  std::string uid;
  std::vector<std::string> groups;
  std::map<std::string, std::vector<std::string>> extra;
};

struct AccessReviewResult {
  // True only when the authorizer said allowed (and not denied).
  bool allowed = false;
  std::string reason;            // the authorizer's explanation, may be empty
  std::string evaluation_error;  // set when the authorizer could not decide
};

// Request body. InvalidArgumentError without a user, verb or resource.
absl::StatusOr<std::string> BuildAccessReviewJson(
    const AccessReviewRequest& request);

// Interprets a SubjectAccessReview response body.
absl::StatusOr<AccessReviewResult> ParseAccessReviewResponse(
    absl::string_view body);

// POST /apis/authorization.k8s.io/v1/subjectaccessreviews. "Not allowed" is a
// result with allowed=false; errors are transport failures and non-2xx
// answers (e.g. 403 when we may not create SubjectAccessReviews).
absl::StatusOr<AccessReviewResult> ReviewAccess(
    HttpClient& client, const AccessReviewRequest& request,
    const std::atomic<bool>* cancel = nullptr);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_SUBJECT_ACCESS_REVIEW_H_
