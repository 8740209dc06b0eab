#include "common/kube/subject_access_review.h"

#include <string>

#include "absl/strings/match.h"
#include "common/kube/authorization_types.pb.h"
#include "common/kube/fake_api_server.h"
#include "common/kube/kube_json.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

AccessReviewRequest ReadCaptures(const std::string& ns) {
  AccessReviewRequest request;
  request.namespace_ = ns;
  request.verb = "get";
  request.group = "packetcapture.antrea.io";
  request.resource = "captures";
  request.user = "system:serviceaccount:team-a:reader";
  request.uid = "uid-1";
  request.groups = {"system:serviceaccounts", "system:authenticated"};
  request.extra = {{"authentication.kubernetes.io/pod-name", {"p"}}};
  return request;
}

TEST(SubjectAccessReviewTest, RequestBodyCarriesAttributesAndUser) {
  absl::StatusOr<std::string> json = BuildAccessReviewJson(ReadCaptures("a"));
  ASSERT_TRUE(json.ok()) << json.status();
  // The API server's field names, as it expects them.
  for (const char* field :
       {R"("apiVersion":"authorization.k8s.io/v1")",
        R"("kind":"SubjectAccessReview")", R"("resourceAttributes":{)",
        R"("namespace":"a")", R"("verb":"get")",
        R"("group":"packetcapture.antrea.io")", R"("resource":"captures")",
        R"("user":"system:serviceaccount:team-a:reader")",
        R"("groups":["system:serviceaccounts","system:authenticated"])",
        R"("extra":{"authentication.kubernetes.io/pod-name":["p"]})",
        R"("uid":"uid-1")"}) {
    EXPECT_TRUE(absl::StrContains(*json, field)) << field << " in " << *json;
  }
  // Unset optional attributes are left out rather than sent empty.
  EXPECT_FALSE(absl::StrContains(*json, "\"name\"")) << *json;
}

TEST(SubjectAccessReviewTest, RequestNeedsUserVerbAndResource) {
  for (auto clear : {+[](AccessReviewRequest* r) { r->user.clear(); },
                     +[](AccessReviewRequest* r) { r->verb.clear(); },
                     +[](AccessReviewRequest* r) { r->resource.clear(); }}) {
    AccessReviewRequest request = ReadCaptures("a");
    clear(&request);
    EXPECT_EQ(BuildAccessReviewJson(request).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(SubjectAccessReviewTest, ParsesAllowedDeniedAndErrors) {
  auto allowed = ParseAccessReviewResponse(
      R"({"status":{"allowed":true,"reason":"RBAC: allowed by RoleBinding"}})");
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_TRUE(allowed->allowed);
  EXPECT_EQ(allowed->reason, "RBAC: allowed by RoleBinding");

  auto no_opinion = ParseAccessReviewResponse(R"({"status":{}})");
  ASSERT_TRUE(no_opinion.ok());
  EXPECT_FALSE(no_opinion->allowed);

  // A webhook may say both; denied wins.
  auto denied =
      ParseAccessReviewResponse(R"({"status":{"allowed":true,"denied":true}})");
  ASSERT_TRUE(denied.ok());
  EXPECT_FALSE(denied->allowed);

  auto error = ParseAccessReviewResponse(
      R"({"status":{"allowed":false,"evaluationError":"webhook down"}})");
  ASSERT_TRUE(error.ok());
  EXPECT_EQ(error->evaluation_error, "webhook down");

  EXPECT_FALSE(ParseAccessReviewResponse("{\"status\":").ok());
  EXPECT_FALSE(
      ParseAccessReviewResponse(R"({"status":{"allowed":[true]}})").ok());
}

TEST(SubjectAccessReviewTest, ReviewAccessOverHttp) {
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    SubjectAccessReview review;
    if (request.method != "POST" ||
        request.target !=
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" ||
        !ParseJson(request.body, &review).ok()) {
      response.status = 400;
      return response;
    }
    const std::string& ns = review.spec().resource_attributes().namespace_();
    if (ns == "forbidden") {
      response.status = 403;
      response.body =
          R"({"kind":"Status","status":"Failure","reason":"Forbidden","code":403})";
      return response;
    }
    response.status = 201;
    response.body = ns == "a" ? R"({"status":{"allowed":true}})"
                              : R"({"status":{"allowed":false}})";
    return response;
  });
  ASSERT_TRUE(server.ok());
  KubeConfig config;
  config.server = (*server)->url();
  auto client = HttpClient::Create(config);
  ASSERT_TRUE(client.ok());

  auto a = ReviewAccess(**client, ReadCaptures("a"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->allowed);
  auto b = ReviewAccess(**client, ReadCaptures("b"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(b->allowed);
  auto forbidden = ReviewAccess(**client, ReadCaptures("forbidden"));
  EXPECT_EQ(forbidden.status().code(), absl::StatusCode::kPermissionDenied)
      << forbidden.status();
  EXPECT_EQ(HttpCodeFromStatus(forbidden.status()), 403);
}

}  // namespace
}  // namespace kube
}  // namespace pc
