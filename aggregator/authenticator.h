// Who is on the other end of an ingest stream: an Authenticator turns the
// token of a Hello into an agent identity. TokenReviewAuthenticator asks the
// Kubernetes API (TokenReview) and caches answers briefly; tests inject fakes.
//
// Thread-safe. Authenticate() may block on the network: call it off gRPC
// reactions (the ingest service runs it on its worker pool).
#ifndef AGGREGATOR_AUTHENTICATOR_H_
#define AGGREGATOR_AUTHENTICATOR_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kube/http_client.h"

namespace pc::aggregator {

struct AgentIdentity {
  std::string username;  // "system:serviceaccount:kube-system:capture-agent"
  // The node the token is bound to, when the token says (empty otherwise).
  std::string node;
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Unauthenticated: no, invalid or expired token, or not for our audience.
  // PermissionDenied: a valid token of another identity.
  // Unavailable: the check itself failed (API server unreachable); retry.
  virtual absl::StatusOr<AgentIdentity> Authenticate(
      const std::string& token) = 0;
};

// The token-review key that names the node of a bound token.
inline constexpr char kNodeNameExtra[] =
    "authentication.kubernetes.io/node-name";

class TokenReviewAuthenticator : public Authenticator {
 public:
  struct Options {
    std::string audience = "packet-capture-aggregator";
    std::string agent_identity =
        "system:serviceaccount:kube-system:capture-agent";
    absl::Duration cache_ttl = absl::Seconds(60);
    size_t max_cache_entries = 10000;
    std::function<absl::Time()> clock;  // absl::Now when empty
  };

  TokenReviewAuthenticator(std::unique_ptr<kube::HttpClient> http,
                           Options options);

  absl::StatusOr<AgentIdentity> Authenticate(const std::string& token) override;

 private:
  absl::Time Now() const;

  const std::unique_ptr<kube::HttpClient> http_;
  const Options options_;

  struct Cached {
    absl::StatusOr<AgentIdentity> result;
    absl::Time expires;
  };
  absl::Mutex mu_;
  std::map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_AUTHENTICATOR_H_
