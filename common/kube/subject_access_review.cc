#include "common/kube/subject_access_review.h"

#include "common/kube/authorization_types.pb.h"
#include "common/kube/kube_json.h"
#include "common/status_macros.h"

namespace pc {
namespace kube {
namespace {

// Names, groups and extra values come from TokenReview (the API server's own
// strings) or from our flags; bound them anyway so the JSON printer never
// sees invalid UTF-8.
std::string Clean(const std::string& s) { return SanitizeUtf8(s, 4096); }

}  // namespace

absl::StatusOr<std::string> BuildAccessReviewJson(
    const AccessReviewRequest& request) {
  if (request.user.empty() || request.verb.empty() ||
      request.resource.empty()) {
    return absl::InvalidArgumentError(
        "access review: user, verb and resource are required");
  }
  SubjectAccessReview review;
  review.set_api_version("authorization.k8s.io/v1");
  review.set_kind("SubjectAccessReview");
  SubjectAccessReviewSpec* spec = review.mutable_spec();
  ResourceAttributes* attributes = spec->mutable_resource_attributes();
  attributes->set_namespace_(Clean(request.namespace_));
  attributes->set_verb(Clean(request.verb));
  attributes->set_group(Clean(request.group));
  attributes->set_resource(Clean(request.resource));
  attributes->set_name(Clean(request.name));
  spec->set_user(Clean(request.user));
  spec->set_uid(Clean(request.uid));
  for (const std::string& group : request.groups)
    spec->add_groups(Clean(group));
  for (const auto& [key, values] : request.extra) {
    google::protobuf::ListValue& list = (*spec->mutable_extra())[Clean(key)];
    for (const std::string& value : values) {
      list.add_values()->set_string_value(Clean(value));
    }
  }
  return ToJson(review);
}

absl::StatusOr<AccessReviewResult> ParseAccessReviewResponse(
    absl::string_view body) {
  SubjectAccessReview review;
  RETURN_IF_ERROR(ParseJson(body, &review));
  AccessReviewResult result;
  result.allowed = review.status().allowed() && !review.status().denied();
  result.reason = review.status().reason();
  result.evaluation_error = review.status().evaluation_error();
  return result;
}

absl::StatusOr<AccessReviewResult> ReviewAccess(
    HttpClient& client, const AccessReviewRequest& request,
    const std::atomic<bool>* cancel) {
  ASSIGN_OR_RETURN(std::string body, BuildAccessReviewJson(request));
  ASSIGN_OR_RETURN(
      HttpResponse response,
      client.Do("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                body, "application/json", cancel));
  if (response.status_code != 201 && response.status_code != 200) {
    return HttpError(response.status_code, response.body);
  }
  return ParseAccessReviewResponse(response.body);
}

}  // namespace kube
}  // namespace pc
