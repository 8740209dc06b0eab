#include "aggregator/authenticator.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/kube/fake_api_server.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

using kube::FakeRequest;
using kube::FakeResponse;

constexpr char kAgent[] = "system:serviceaccount:kube-system:capture-agent";

// The API server's answer for each token the tests use.
FakeResponse Review(const FakeRequest& request) {
  FakeResponse response;
  auto status = [](bool ok, const std::string& user, const std::string& extra) {
    return absl::StrCat(
        R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",)",
        R"("status":{"authenticated":)", ok ? "true" : "false",
        R"(,"user":{"username":")", user, R"(","extra":{)", extra,
        R"(}},"audiences":["packet-capture-aggregator"]}})");
  };
  if (absl::StrContains(request.body, "good-token")) {
    response.body = status(true, kAgent, "");
  } else if (absl::StrContains(request.body, "node-token")) {
    response.body = status(
        true, kAgent, R"("authentication.kubernetes.io/node-name":["node-a"])");
  } else if (absl::StrContains(request.body, "other-user")) {
    response.body = status(true, "system:serviceaccount:default:default", "");
  } else if (absl::StrContains(request.body, "broken")) {
    response.status = 500;
    response.body = "{}";
  } else {
    response.body = status(false, "", "");
  }
  return response;
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = kube::FakeApiServer::Start(Review);
    ASSERT_TRUE(server.ok());
    server_ = std::move(*server);
    kube::KubeConfig config;
    config.server = server_->url();
    config.token = "aggregator-token";
    auto http = kube::HttpClient::Create(config);
    ASSERT_TRUE(http.ok()) << http.status();
    TokenReviewAuthenticator::Options options;
    options.clock = [this] { return now_; };
    auth_ =
        std::make_unique<TokenReviewAuthenticator>(std::move(*http), options);
  }

  std::unique_ptr<kube::FakeApiServer> server_;
  std::unique_ptr<TokenReviewAuthenticator> auth_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

TEST_F(AuthenticatorTest, AcceptsTheAgentIdentityAndReportsTheBoundNode) {
  auto id = auth_->Authenticate("good-token");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->username, kAgent);
  EXPECT_EQ(id->node, "");
  id = auth_->Authenticate("node-token");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->node, "node-a");
  ASSERT_EQ(server_->requests().size(), 2u);
  EXPECT_TRUE(absl::StrContains(server_->requests()[0].body,
                                "packet-capture-aggregator"));
}

TEST_F(AuthenticatorTest, RejectsWithPreciseCodes) {
  EXPECT_EQ(auth_->Authenticate("").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth_->Authenticate("bad").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth_->Authenticate("other-user").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth_->Authenticate("broken").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(AuthenticatorTest, CachesAnswersForTheTtl) {
  ASSERT_TRUE(auth_->Authenticate("good-token").ok());
  ASSERT_TRUE(auth_->Authenticate("good-token").ok());
  EXPECT_FALSE(auth_->Authenticate("bad").ok());
  EXPECT_FALSE(auth_->Authenticate("bad").ok());
  EXPECT_EQ(server_->requests().size(), 2u);
  now_ += absl::Seconds(61);
  ASSERT_TRUE(auth_->Authenticate("good-token").ok());
  EXPECT_EQ(server_->requests().size(), 3u);
  // Transport failures are not cached.
  EXPECT_FALSE(auth_->Authenticate("broken").ok());
  EXPECT_FALSE(auth_->Authenticate("broken").ok());
  EXPECT_EQ(server_->requests().size(), 5u);
}

}  // namespace
}  // namespace pc::aggregator
