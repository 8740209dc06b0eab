#include "common/kube/token_review.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/kube/kube_json.h"
#include "common/kube/kube_types.pb.h"
#include "common/status_macros.h"

namespace pc {
namespace kube {

absl::StatusOr<std::string> BuildTokenReviewJson(
    absl::string_view token, const std::vector<std::string>& audiences) {
  if (token.empty())
    return absl::InvalidArgumentError("token review: empty token");
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "token review: token is not printable ASCII");
    }
  }
  TokenReview review;
  review.set_api_version("authentication.k8s.io/v1");
  review.set_kind("TokenReview");
  review.mutable_spec()->set_token(std::string(token));
  for (const std::string& audience : audiences) {
    review.mutable_spec()->add_audiences(
        SanitizeUtf8(audience, audience.size()));
  }
  return ToJson(review);
}

absl::StatusOr<TokenReviewResult> ParseTokenReviewResponse(
    absl::string_view body, const std::vector<std::string>& audiences) {
  TokenReview review;
  RETURN_IF_ERROR(ParseJson(body, &review));
  const TokenReviewStatus& status = review.status();
  TokenReviewResult result;
  result.authenticated = status.authenticated();
  result.username = status.user().username();
  result.uid = status.user().uid();
  result.groups.assign(status.user().groups().begin(),
                       status.user().groups().end());
  result.audiences.assign(status.audiences().begin(), status.audiences().end());
  for (const auto& [key, list] : status.user().extra()) {
    std::vector<std::string>& values = result.extra[key];
    for (const google::protobuf::Value& value : list.values()) {
      if (value.kind_case() == google::protobuf::Value::kStringValue) {
        values.push_back(value.string_value());
      }
    }
  }
  result.error = status.error();
  if (result.authenticated && !audiences.empty()) {
    bool match = std::any_of(
        audiences.begin(), audiences.end(), [&](const std::string& a) {
          return std::find(result.audiences.begin(), result.audiences.end(),
                           a) != result.audiences.end();
        });
    if (!match) {
      result.authenticated = false;
      result.error = absl::StrCat("token is not valid for audiences [",
                                  absl::StrJoin(audiences, ","), "]");
    }
  }
  return result;
}

absl::StatusOr<TokenReviewResult> ReviewToken(
    HttpClient& client, absl::string_view token,
    const std::vector<std::string>& audiences,
    const std::atomic<bool>* cancel) {
  ASSIGN_OR_RETURN(std::string body, BuildTokenReviewJson(token, audiences));
  ASSIGN_OR_RETURN(
      HttpResponse response,
      client.Do("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body,
                "application/json", cancel));
  if (response.status_code != 201 && response.status_code != 200) {
    return HttpError(response.status_code, response.body);
  }
  return ParseTokenReviewResponse(response.body, audiences);
}

}  // namespace kube
}  // namespace pc
