#include "aggregator/read_authorizer.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/kube/authorization_types.pb.h"
#include "common/kube/fake_api_server.h"
#include "common/kube/kube_json.h"
#include "common/kube/kube_types.pb.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

using kube::FakeRequest;
using kube::FakeResponse;

constexpr char kReader[] = "system:serviceaccount:team-a:reader";

// A fake API server: TokenReview knows "reader-token" (the API server's own
// audience) and "aud-token" (only for the audience "packet-capture-reader");
// SubjectAccessReview allows kReader to get captures in "team-a" only.
// "slow" requests take `delay`; "fail" makes every answer a 500.
class FakeApi {
 public:
  FakeApi() {
    auto server = kube::FakeApiServer::Start(
        [this](const FakeRequest& request) { return Handle(request); });
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::unique_ptr<kube::HttpClient> Client() {
    kube::KubeConfig config;
    config.server = server_->url();
    config.token = "aggregator-own-token";
    auto http = kube::HttpClient::Create(config);
    EXPECT_TRUE(http.ok()) << http.status();
    return std::move(*http);
  }

  int token_reviews() { return Count("tokenreviews"); }
  int access_reviews() { return Count("subjectaccessreviews"); }
  std::vector<FakeRequest> requests() { return server_->requests(); }
  void set_delay(absl::Duration delay) {
    absl::MutexLock lock(&mu_);
    delay_ = delay;
  }
  void set_failing(bool failing) {
    absl::MutexLock lock(&mu_);
    failing_ = failing;
  }

 private:
  int Count(const std::string& resource) {
    int n = 0;
    for (const auto& r : server_->requests()) {
      n += absl::EndsWith(r.target, resource) ? 1 : 0;
    }
    return n;
  }

  FakeResponse Handle(const FakeRequest& request) {
    absl::Duration delay;
    bool failing;
    {
      absl::MutexLock lock(&mu_);
      delay = delay_;
      failing = failing_;
    }
    absl::SleepFor(delay);
    FakeResponse response;
    response.status = 201;
    if (failing) {
      response.status = 500;
      response.body = R"({"kind":"Status","message":"etcd timeout"})";
      return response;
    }
    if (absl::EndsWith(request.target, "/tokenreviews")) {
      kube::TokenReview review;
      EXPECT_TRUE(kube::ParseJson(request.body, &review).ok());
      const auto& spec = review.spec();
      const bool custom = spec.audiences_size() == 1 &&
                          spec.audiences(0) == "packet-capture-reader";
      bool ok =
          (spec.token() == "reader-token" && spec.audiences_size() == 0) ||
          (spec.token() == "aud-token" && custom);
      response.body = absl::StrCat(
          R"({"status":{"authenticated":)", ok ? "true" : "false",
          R"(,"user":{"username":")", ok ? kReader : "",
          R"(","uid":"u-1","groups":["system:serviceaccounts","system:authenticated"],)",
          R"("extra":{"authentication.kubernetes.io/pod-name":["p-1"]}})",
          R"(,"audiences":[)", custom ? R"("packet-capture-reader")" : "",
          R"(],"error":)", ok ? R"("")" : R"("invalid bearer token")", "}}");
      return response;
    }
    if (absl::EndsWith(request.target, "/subjectaccessreviews")) {
      kube::SubjectAccessReview review;
      EXPECT_TRUE(kube::ParseJson(request.body, &review).ok());
      const auto& spec = review.spec();
      const auto& attributes = spec.resource_attributes();
      if (attributes.namespace_() == "undecided") {
        response.body =
            R"({"status":{"allowed":false,"evaluationError":"webhook down"}})";
        return response;
      }
      bool allowed = spec.user() == kReader &&
                     attributes.namespace_() == "team-a" &&
                     attributes.verb() == "get" &&
                     attributes.group() == "packetcapture.antrea.io" &&
                     attributes.resource() == "captures";
      response.body = absl::StrCat(R"({"status":{"allowed":)",
                                   allowed ? "true" : "false", "}}");
      return response;
    }
    response.status = 404;
    return response;
  }

  absl::Mutex mu_;
  absl::Duration delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<kube::FakeApiServer> server_;
};

using Answer = absl::StatusOr<std::vector<bool>>;

// CanRead, waited for.
Answer Ask(ReadAuthorizer& authorizer, const std::string& token,
           const std::vector<std::string>& namespaces) {
  absl::Notification done;
  Answer answer;
  authorizer.CanRead(token, namespaces, [&](Answer a) {
    answer = std::move(a);
    done.Notify();
  });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  return answer;
}

class ReadAuthorizerTest : public ::testing::Test {
 protected:
  std::unique_ptr<ApiReadAuthorizer> Make(
      ApiReadAuthorizer::Options options = {}) {
    options.clock = [this] {
      absl::MutexLock lock(&mu_);
      return now_;
    };
    return std::make_unique<ApiReadAuthorizer>(api_.Client(), options);
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

  FakeApi api_;
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1000000);
};

TEST_F(ReadAuthorizerTest, AnswersPerNamespaceFromRbac) {
  auto authorizer = Make();
  Answer answer = Ask(*authorizer, "reader-token", {"team-b", "team-a", "x"});
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(*answer, (std::vector<bool>{false, true, false}));
  // Only authenticating: no namespace asked.
  answer = Ask(*authorizer, "reader-token", {});
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_TRUE(answer->empty());

  // The review carries what RBAC needs: the user, its groups and extra.
  std::string sar;
  for (const auto& r : api_.requests()) {
    if (absl::EndsWith(r.target, "/subjectaccessreviews")) sar = r.body;
  }
  for (const char* field :
       {R"("user":"system:serviceaccount:team-a:reader")", R"("uid":"u-1")",
        R"("groups":["system:serviceaccounts","system:authenticated"])",
        R"("extra":{"authentication.kubernetes.io/pod-name":["p-1"]})"}) {
    EXPECT_TRUE(absl::StrContains(sar, field)) << field << " in " << sar;
  }
  // Each request authenticated as the aggregator itself.
  EXPECT_EQ(api_.requests()[0].headers.at("authorization"),
            "Bearer aggregator-own-token");
}

TEST_F(ReadAuthorizerTest, UnknownTokenIsUnauthenticatedWithoutAccessReview) {
  auto authorizer = Make();
  Answer answer = Ask(*authorizer, "stolen", {"team-a"});
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(answer.status().message(), "invalid bearer"))
      << answer.status();
  EXPECT_EQ(api_.access_reviews(), 0);
  EXPECT_EQ(Ask(*authorizer, "", {}).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(ReadAuthorizerTest, AnswersAreCachedForTheTtlOnly) {
  auto authorizer = Make();
  ASSERT_TRUE(Ask(*authorizer, "reader-token", {"team-a", "team-b"}).ok());
  ASSERT_EQ(api_.token_reviews(), 1);
  ASSERT_EQ(api_.access_reviews(), 2);
  // Any subset, in any order, from the cache.
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"team-b", "team-a"}),
            (std::vector<bool>{false, true}));
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"team-a"}),
            std::vector<bool>{true});
  EXPECT_EQ(Ask(*authorizer, "stolen", {}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Ask(*authorizer, "stolen", {}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(api_.token_reviews(), 2);
  EXPECT_EQ(api_.access_reviews(), 2);

  Advance(absl::Seconds(11));  // default TTL 10 s
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"team-a"}),
            std::vector<bool>{true});
  EXPECT_EQ(api_.token_reviews(), 3);
  EXPECT_EQ(api_.access_reviews(), 3);
}

TEST_F(ReadAuthorizerTest, ApiErrorsAreUnavailableAndNotCached) {
  auto authorizer = Make();
  api_.set_failing(true);
  Answer answer = Ask(*authorizer, "reader-token", {"team-a"});
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(answer.status().message(), "TokenReview"))
      << answer.status();
  api_.set_failing(false);
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"team-a"}),
            std::vector<bool>{true});
  // An authorizer that could not decide denies, and is asked again.
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"undecided"}),
            std::vector<bool>{false});
  int before = api_.access_reviews();
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"undecided"}),
            std::vector<bool>{false});
  EXPECT_EQ(api_.access_reviews(), before + 1);
}

TEST_F(ReadAuthorizerTest, ExtraAudienceIsTriedAfterTheApiServersOwn) {
  auto without = Make();
  EXPECT_EQ(Ask(*without, "aud-token", {}).status().code(),
            absl::StatusCode::kUnauthenticated);
  ApiReadAuthorizer::Options options;
  options.extra_audience = "packet-capture-reader";
  auto with = Make(options);
  EXPECT_EQ(*Ask(*with, "aud-token", {"team-a"}), std::vector<bool>{true});
  EXPECT_EQ(*Ask(*with, "reader-token", {"team-a"}), std::vector<bool>{true});
  EXPECT_EQ(Ask(*with, "stolen", {}).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(ReadAuthorizerTest, SameQuestionsWhilePendingShareOneReview) {
  api_.set_delay(absl::Milliseconds(300));
  auto authorizer = Make();
  constexpr int kCalls = 50;
  absl::Mutex mu;
  int answered = 0;
  for (int i = 0; i < kCalls; ++i) {
    authorizer->CanRead("reader-token", {"team-a"}, [&](Answer answer) {
      EXPECT_TRUE(answer.ok() && *answer == std::vector<bool>{true});
      absl::MutexLock lock(&mu);
      ++answered;
    });
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(mu.AwaitWithTimeout(
        absl::Condition(
            +[](int* n) { return *n == kCalls; }, &answered),
        absl::Seconds(20)));
  }
  EXPECT_EQ(api_.token_reviews(), 1);
  EXPECT_EQ(api_.access_reviews(), 1);
}

TEST_F(ReadAuthorizerTest, AFloodOfTokensIsBoundedAndRefusedBeyond) {
  api_.set_delay(absl::Milliseconds(200));
  ApiReadAuthorizer::Options options;
  options.threads = 1;
  options.max_pending = 3;
  auto authorizer = Make(options);
  absl::Mutex mu;
  std::vector<absl::StatusCode> codes;
  for (int i = 0; i < 10; ++i) {
    authorizer->CanRead(absl::StrCat("bogus-", i), {}, [&](Answer answer) {
      absl::MutexLock lock(&mu);
      codes.push_back(answer.status().code());
    });
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(mu.AwaitWithTimeout(
        absl::Condition(
            +[](std::vector<absl::StatusCode>* c) { return c->size() == 10; },
            &codes),
        absl::Seconds(20)));
    EXPECT_EQ(std::count(codes.begin(), codes.end(),
                         absl::StatusCode::kResourceExhausted),
              7);
    EXPECT_EQ(std::count(codes.begin(), codes.end(),
                         absl::StatusCode::kUnauthenticated),
              3);
  }
  EXPECT_EQ(api_.token_reviews(), 3);
}

TEST_F(ReadAuthorizerTest, CacheIsBoundedOldestFirst) {
  ApiReadAuthorizer::Options options;
  options.max_cache_entries = 2;
  auto authorizer = Make(options);
  EXPECT_FALSE(Ask(*authorizer, "stolen-1", {}).ok());
  EXPECT_FALSE(Ask(*authorizer, "stolen-2", {}).ok());
  EXPECT_FALSE(Ask(*authorizer, "stolen-3", {}).ok());  // pushes stolen-1 out
  EXPECT_EQ(api_.token_reviews(), 3);
  EXPECT_FALSE(Ask(*authorizer, "stolen-3", {}).ok());
  EXPECT_FALSE(Ask(*authorizer, "stolen-2", {}).ok());
  EXPECT_EQ(api_.token_reviews(), 3);
  EXPECT_FALSE(Ask(*authorizer, "stolen-1", {}).ok());
  EXPECT_EQ(api_.token_reviews(), 4);
}

TEST_F(ReadAuthorizerTest, DestructionAnswersEverythingStillPending) {
  api_.set_delay(absl::Milliseconds(300));
  ApiReadAuthorizer::Options options;
  options.threads = 1;
  auto authorizer = Make(options);
  std::vector<absl::StatusCode> codes(3, absl::StatusCode::kOk);
  for (int i = 0; i < 3; ++i) {
    authorizer->CanRead(
        absl::StrCat("token-", i), {"team-a"},
        [&codes, i](Answer answer) { codes[i] = answer.status().code(); });
  }
  absl::SleepFor(absl::Milliseconds(50));  // the first is in flight
  authorizer.reset();
  for (absl::StatusCode code : codes) {
    EXPECT_EQ(code, absl::StatusCode::kUnavailable);
  }
}

TEST_F(ReadAuthorizerTest, NamespacesCannotCollideInKeys) {
  auto authorizer = Make();
  // One namespace spelled like two must not share an answer with them.
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"team-a", "b"}),
            (std::vector<bool>{true, false}));
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"team-a/b"}),
            std::vector<bool>{false});
  EXPECT_EQ(*Ask(*authorizer, "reader-token", {"team-a1:b"}),
            std::vector<bool>{false});
}

}  // namespace
}  // namespace pc::aggregator
