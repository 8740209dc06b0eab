// Asks the API server whether a bearer token is valid (TokenReview), for the
// aggregator to authenticate agents. Free functions; thread-safe (HttpClient
// is).
#ifndef COMMON_KUBE_TOKEN_REVIEW_H_
#define COMMON_KUBE_TOKEN_REVIEW_H_

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kube/http_client.h"

namespace pc {
namespace kube {

// Keys of TokenReviewResult::extra in a token bound to a Pod (kubectl create
// token --bound-object-kind Pod, or a projected serviceAccountToken volume).
inline constexpr char kPodNameExtra[] = "authentication.kubernetes.io/pod-name";
inline constexpr char kPodUidExtra[] = "authentication.kubernetes.io/pod-uid";
// Added by API servers from 1.30 (ServiceAccountTokenPodNodeInfo) when the
// pod is scheduled.
inline constexpr char kNodeNameExtra[] =
    "authentication.kubernetes.io/node-name";

struct TokenReviewResult {
  // True only when the API server authenticated the token and, if audiences
  // were requested, status.audiences holds at least one of them.
  bool authenticated = false;
  std::string username;  // e.g. "system:serviceaccount:<ns>:<sa>"
  std::string uid;
  std::vector<std::string> groups;
  std::vector<std::string> audiences;
  // Bound tokens carry kPodNameExtra, kPodUidExtra and (recent versions)
  // kNodeNameExtra.
  std::map<std::string, std::vector<std::string>> extra;
  std::string error;  // why not authenticated, when known
};

// Request body of a TokenReview. InvalidArgumentError for an empty token or
// one with bytes outside printable ASCII.
absl::StatusOr<std::string> BuildTokenReviewJson(
    absl::string_view token, const std::vector<std::string>& audiences);

// Interprets a TokenReview response body (see
// TokenReviewResult::authenticated).
absl::StatusOr<TokenReviewResult> ParseTokenReviewResponse(
    absl::string_view body, const std::vector<std::string>& audiences);

// POST /apis/authentication.k8s.io/v1/tokenreviews. A rejected token is a
// result with authenticated=false; errors are transport failures and non-2xx
// answers (e.g. 403 when we lack system:auth-delegator).
absl::StatusOr<TokenReviewResult> ReviewToken(
    HttpClient& client, absl::string_view token,
    const std::vector<std::string>& audiences,
    const std::atomic<bool>* cancel = nullptr);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_TOKEN_REVIEW_H_
