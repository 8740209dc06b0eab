#include "common/kube/token_review.h"

#include <string>

#include "absl/strings/match.h"
#include "common/kube/fake_api_server.h"
#include "common/kube/kube_json.h"
#include "common/kube/kube_types.pb.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

constexpr char kAuthenticated[] = R"({
  "kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
  "metadata": {"creationTimestamp": null},
  "spec": {"token": "t", "audiences": ["packet-capture"]},
  "status": {
    "authenticated": true,
    "user": {
      "username": "system:serviceaccount:pc:agent",
      "uid": "sa-uid",
      "groups": ["system:serviceaccounts", "system:serviceaccounts:pc", "system:authenticated"],
      "extra": {
        "authentication.kubernetes.io/pod-name": ["agent-xyz"],
        "authentication.kubernetes.io/pod-uid": ["pod-uid-1"],
        "authentication.kubernetes.io/node-name": ["node-1"]
      }
    },
    "audiences": ["packet-capture"]
  }
})";

TEST(TokenReviewTest, RequestBody) {
  absl::StatusOr<std::string> json =
      BuildTokenReviewJson("abc.def.ghi", {"packet-capture"});
  ASSERT_TRUE(json.ok()) << json.status();
  TokenReview review;
  ASSERT_TRUE(ParseJson(*json, &review).ok());
  EXPECT_EQ(review.api_version(), "authentication.k8s.io/v1");
  EXPECT_EQ(review.kind(), "TokenReview");
  EXPECT_EQ(review.spec().token(), "abc.def.ghi");
  ASSERT_EQ(review.spec().audiences_size(), 1);
  EXPECT_EQ(review.spec().audiences(0), "packet-capture");
  EXPECT_TRUE(
      absl::StrContains(*json, "\"apiVersion\":\"authentication.k8s.io/v1\""))
      << *json;

  EXPECT_FALSE(BuildTokenReviewJson("", {}).ok());
  EXPECT_FALSE(BuildTokenReviewJson("a b", {}).ok());
  EXPECT_FALSE(BuildTokenReviewJson("a\nb", {}).ok());
}

TEST(TokenReviewTest, ParsesAuthenticatedUserAndExtra) {
  absl::StatusOr<TokenReviewResult> result =
      ParseTokenReviewResponse(kAuthenticated, {"packet-capture"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->authenticated);
  EXPECT_EQ(result->username, "system:serviceaccount:pc:agent");
  EXPECT_EQ(result->uid, "sa-uid");
  EXPECT_EQ(result->groups.size(), 3u);
  EXPECT_EQ(result->audiences, std::vector<std::string>{"packet-capture"});
  EXPECT_EQ(result->extra.at("authentication.kubernetes.io/pod-name"),
            std::vector<std::string>{"agent-xyz"});
  EXPECT_EQ(result->extra.at("authentication.kubernetes.io/node-name"),
            std::vector<std::string>{"node-1"});
}

TEST(TokenReviewTest, WrongAudienceIsNotAuthenticated) {
  absl::StatusOr<TokenReviewResult> result =
      ParseTokenReviewResponse(kAuthenticated, {"other"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->authenticated);
  EXPECT_TRUE(absl::StrContains(result->error, "other")) << result->error;
}

TEST(TokenReviewTest, RejectedAndMalformed) {
  absl::StatusOr<TokenReviewResult> result = ParseTokenReviewResponse(
      R"({"status":{"authenticated":false,"error":"token has expired"}})", {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->authenticated);
  EXPECT_EQ(result->error, "token has expired");
  EXPECT_FALSE(ParseTokenReviewResponse("{\"status\":", {}).ok());
  EXPECT_FALSE(ParseTokenReviewResponse(
                   R"({"status":{"user":{"extra":{"k":"not a list"}}}})", {})
                   .ok());
}

TEST(TokenReviewTest, ReviewTokenOverHttp) {
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    TokenReview review;
    if (request.target != "/apis/authentication.k8s.io/v1/tokenreviews" ||
        !ParseJson(request.body, &review).ok()) {
      response.status = 400;
      return response;
    }
    if (review.spec().token() == "denied") {
      response.status = 403;
      response.body =
          R"({"kind":"Status","status":"Failure","reason":"Forbidden","code":403})";
      return response;
    }
    response.status = 201;
    response.body = kAuthenticated;
    return response;
  });
  ASSERT_TRUE(server.ok());
  KubeConfig config;
  config.server = (*server)->url();
  auto client = HttpClient::Create(config);
  ASSERT_TRUE(client.ok());

  absl::StatusOr<TokenReviewResult> result =
      ReviewToken(**client, "good", {"packet-capture"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->authenticated);
  EXPECT_EQ((*server)->requests()[0].method, "POST");

  result = ReviewToken(**client, "denied", {"packet-capture"});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kPermissionDenied)
      << result.status();
  EXPECT_EQ(HttpCodeFromStatus(result.status()), 403);
}

}  // namespace
}  // namespace kube
}  // namespace pc
