#include "aggregator/authenticator.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/kube/fake_api_server.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

using kube::FakeRequest;
using kube::FakeResponse;

constexpr char kAgent[] = "system:serviceaccount:kube-system:capture-agent";
constexpr char kPodName[] = "authentication.kubernetes.io/pod-name";
constexpr char kPodUid[] = "authentication.kubernetes.io/pod-uid";

std::string BoundTo(const std::string& pod, const std::string& uid) {
  return absl::StrCat("\"", kPodName, "\":[\"", pod, "\"],\"", kPodUid,
                      "\":[\"", uid, "\"]");
}

// The API server's answer for each token the tests use, and the agent Pods
// it knows.
FakeResponse Api(const FakeRequest& request) {
  FakeResponse response;
  if (request.method == "GET") {
    if (request.target == "/api/v1/namespaces/kube-system/pods/agent-b") {
      response.body =
          R"({"kind":"Pod","metadata":{"name":"agent-b","namespace":"kube-system",)"
          R"("uid":"uid-b"},"spec":{"nodeName":"node-b"}})";
    } else if (request.target ==
               "/api/v1/namespaces/kube-system/pods/agent-pending") {
      response.body =
          R"({"kind":"Pod","metadata":{"name":"agent-pending","uid":"uid-p"},)"
          R"("spec":{}})";
    } else if (request.target ==
               "/api/v1/namespaces/kube-system/pods/agent-forbidden") {
      response.status = 403;
      response.body =
          R"({"kind":"Status","status":"Failure","reason":"Forbidden",)"
          R"("message":"pods \"agent-forbidden\" is forbidden","code":403})";
    } else {
      response.status = 404;
      response.body =
          R"({"kind":"Status","status":"Failure","reason":"NotFound",)"
          R"("message":"not found","code":404})";
    }
    return response;
  }
  auto status = [](bool ok, const std::string& user, const std::string& extra) {
    return absl::StrCat(
        R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",)",
        R"("status":{"authenticated":)", ok ? "true" : "false",
        R"(,"user":{"username":")", user, R"(","extra":{)", extra,
        R"(}},"audiences":["packet-capture-aggregator"]}})");
  };
  const std::string& body = request.body;
  if (absl::StrContains(body, "node-token")) {
    // A current API server: pod-bound, with the node named.
    response.body =
        status(true, kAgent,
               absl::StrCat(
                   BoundTo("agent-a", "uid-a"),
                   R"(,"authentication.kubernetes.io/node-name":["node-a"])"));
  } else if (absl::StrContains(body, "pod-token")) {
    // An older API server: the pod only.
    response.body = status(true, kAgent, BoundTo("agent-b", "uid-b"));
  } else if (absl::StrContains(body, "replaced-pod")) {
    response.body = status(true, kAgent, BoundTo("agent-b", "uid-old"));
  } else if (absl::StrContains(body, "gone-pod")) {
    response.body = status(true, kAgent, BoundTo("agent-gone", "uid-g"));
  } else if (absl::StrContains(body, "pending-pod")) {
    response.body = status(true, kAgent, BoundTo("agent-pending", "uid-p"));
  } else if (absl::StrContains(body, "forbidden-pod")) {
    response.body = status(true, kAgent, BoundTo("agent-forbidden", "uid-f"));
  } else if (absl::StrContains(body, "unbound-token")) {
    // kubectl create token without --bound-object-kind.
    response.body = status(true, kAgent, "");
  } else if (absl::StrContains(body, "other-user")) {
    response.body = status(true, "system:serviceaccount:default:default", "");
  } else if (absl::StrContains(body, "broken")) {
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
    auto server = kube::FakeApiServer::Start(Api);
    ASSERT_TRUE(server.ok());
    server_ = std::move(*server);
    Make(TokenReviewAuthenticator::Options());
  }

  void Make(TokenReviewAuthenticator::Options options) {
    kube::KubeConfig config;
    config.server = server_->url();
    config.token = "aggregator-token";
    auto http = kube::HttpClient::Create(config);
    ASSERT_TRUE(http.ok()) << http.status();
    options.clock = [this] { return now_; };
    auth_ =
        std::make_unique<TokenReviewAuthenticator>(std::move(*http), options);
  }

  size_t Reviews() const {
    size_t n = 0;
    for (const auto& r : server_->requests()) n += r.method == "POST";
    return n;
  }

  std::unique_ptr<kube::FakeApiServer> server_;
  std::unique_ptr<TokenReviewAuthenticator> auth_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

TEST_F(AuthenticatorTest, AcceptsTheAgentIdentityAndReportsTheBoundNode) {
  auto id = auth_->Authenticate("node-token");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->username, kAgent);
  EXPECT_EQ(id->node, "node-a");
  // The API server named the node: no Pod lookup was needed.
  ASSERT_EQ(server_->requests().size(), 1u);
  EXPECT_TRUE(absl::StrContains(server_->requests()[0].body,
                                "packet-capture-aggregator"));
}

// Older API servers put only the pod into a bound token: the node comes from
// the Pod itself, which must be the very pod the token was minted for.
TEST_F(AuthenticatorTest, TheNodeOfAPodBoundTokenComesFromItsPod) {
  auto id = auth_->Authenticate("pod-token");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->node, "node-b");
  ASSERT_EQ(server_->requests().size(), 2u);
  EXPECT_EQ(server_->requests()[1].target,
            "/api/v1/namespaces/kube-system/pods/agent-b");

  // Same name, another uid: the pod the token was bound to is gone.
  auto replaced = auth_->Authenticate("replaced-pod");
  EXPECT_EQ(replaced.status().code(), absl::StatusCode::kUnauthenticated)
      << replaced.status();
  auto gone = auth_->Authenticate("gone-pod");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kUnauthenticated)
      << gone.status();
  auto pending = auth_->Authenticate("pending-pod");
  EXPECT_EQ(pending.status().code(), absl::StatusCode::kPermissionDenied)
      << pending.status();
  // The aggregator lacks `get pods`: its own problem, retried, not cached.
  auto forbidden = auth_->Authenticate("forbidden-pod");
  EXPECT_EQ(forbidden.status().code(), absl::StatusCode::kUnavailable)
      << forbidden.status();
  EXPECT_TRUE(absl::StrContains(forbidden.status().message(), "get pods"))
      << forbidden.status();
  const size_t before = server_->requests().size();
  EXPECT_FALSE(auth_->Authenticate("forbidden-pod").ok());
  EXPECT_EQ(server_->requests().size(), before + 2);
}

// A token bound to no pod could speak for any node: refused, with the way to
// get a bound one.
TEST_F(AuthenticatorTest, RefusesATokenBoundToNoPod) {
  auto id = auth_->Authenticate("unbound-token");
  ASSERT_EQ(id.status().code(), absl::StatusCode::kPermissionDenied)
      << id.status();
  EXPECT_TRUE(absl::StrContains(id.status().message(), "not bound to a Pod"))
      << id.status();
  EXPECT_TRUE(
      absl::StrContains(id.status().message(), "--bound-object-kind Pod"))
      << id.status();
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

TEST_F(AuthenticatorTest, RefusesOversizedTokensWithoutAReview) {
  const std::string huge(
      TokenReviewAuthenticator::Options().max_token_bytes + 1, 'x');
  auto id = auth_->Authenticate(huge);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(id.status().message(), "bytes")) << id.status();
  EXPECT_EQ(server_->requests().size(), 0u);
  EXPECT_EQ(auth_->cache_bytes(), 0u);
}

TEST_F(AuthenticatorTest, CachesAnswersForTheTtl) {
  ASSERT_TRUE(auth_->Authenticate("node-token").ok());
  ASSERT_TRUE(auth_->Authenticate("node-token").ok());
  EXPECT_FALSE(auth_->Authenticate("bad").ok());
  EXPECT_FALSE(auth_->Authenticate("bad").ok());
  EXPECT_EQ(server_->requests().size(), 2u);
  now_ += absl::Seconds(61);
  ASSERT_TRUE(auth_->Authenticate("node-token").ok());
  EXPECT_EQ(server_->requests().size(), 3u);
  // Transport failures are not cached.
  EXPECT_FALSE(auth_->Authenticate("broken").ok());
  EXPECT_FALSE(auth_->Authenticate("broken").ok());
  EXPECT_EQ(server_->requests().size(), 5u);
}

// Each rejected token costs the cache a digest and a short answer, whatever
// the token's size: 200 tokens of the largest size allowed stay far below
// what the tokens themselves weigh (1.6 MB).
TEST_F(AuthenticatorTest, TheCacheHoldsDigestsNotTokens) {
  const size_t size = TokenReviewAuthenticator::Options().max_token_bytes;
  for (int i = 0; i < 200; ++i) {
    std::string token = absl::StrCat("filler-", i, "-");
    token.resize(size, 'x');
    ASSERT_EQ(auth_->Authenticate(token).status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  EXPECT_EQ(Reviews(), 200u);
  EXPECT_LT(auth_->cache_bytes(), 200u * 512) << "cache holds token bytes";
}

// Strangers' rejected tokens have a bounded cache of their own: a flood of
// them neither grows memory nor evicts the agents' cached answers.
TEST_F(AuthenticatorTest, RejectionsAreBoundedAndDoNotEvictAgents) {
  TokenReviewAuthenticator::Options options;
  options.max_cache_entries = 8;
  options.max_negative_cache_entries = 8;
  Make(options);
  ASSERT_TRUE(auth_->Authenticate("node-token").ok());
  size_t bytes_after_8 = 0;
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(auth_->Authenticate(absl::StrCat("garbage-", i)).ok());
    if (i == 7) bytes_after_8 = auth_->cache_bytes();
  }
  EXPECT_LE(auth_->cache_bytes(), bytes_after_8);
  const size_t reviews = Reviews();
  ASSERT_TRUE(auth_->Authenticate("node-token").ok());
  EXPECT_EQ(Reviews(), reviews) << "the agent's answer was evicted";
  // The newest rejections are still cached.
  ASSERT_FALSE(auth_->Authenticate("garbage-99").ok());
  EXPECT_EQ(Reviews(), reviews);
}

}  // namespace
}  // namespace pc::aggregator
