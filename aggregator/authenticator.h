// Who is on the other end of an ingest stream: an Authenticator turns the
// token of a Hello into an agent identity bound to one node.
// TokenReviewAuthenticator asks the Kubernetes API (TokenReview, and the
// token's Pod when the review does not name its node) and caches answers
// briefly under the token's SHA-256 digest; tests inject fakes.
//
// Thread-safe. Authenticate() may block on the network: call it off gRPC
// reactions (the ingest service runs it on its worker pool).
#ifndef AGGREGATOR_AUTHENTICATOR_H_
#define AGGREGATOR_AUTHENTICATOR_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kube/http_client.h"
#include "common/metrics/latency_histogram.h"

namespace pc::aggregator {

struct AgentIdentity {
  std::string username;  // "system:serviceaccount:kube-system:capture-agent"
  // The node the agent may report for: the node of the Pod its token is
  // bound to. Never empty in an identity TokenReviewAuthenticator returns.
  std::string node;
  // That Pod.
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Unauthenticated: no, oversized, invalid or expired token, not for our
  // audience, or bound to a Pod that no longer exists.
  // PermissionDenied: a valid token of another identity, or one bound to no
  // Pod (or to one on no node yet): its node cannot be verified.
  // Unavailable: the check itself failed (API server unreachable, or the
  // aggregator may not read the Pod); retry.
  virtual absl::StatusOr<AgentIdentity> Authenticate(
      const std::string& token) = 0;
};

class TokenReviewAuthenticator : public Authenticator {
 public:
  struct Options {
    std::string audience = "packet-capture-aggregator";
    std::string agent_identity =
        "system:serviceaccount:kube-system:capture-agent";
    absl::Duration cache_ttl = absl::Seconds(60);
    // Cached acceptances (one per agent token in use) and rejections, each
    // keyed by a 32-byte digest with an answer of at most a few hundred
    // bytes; the oldest go first when full, so strangers' tokens never
    // evict the agents'.
    size_t max_cache_entries = 4096;
    size_t max_negative_cache_entries = 1024;
    // Longer tokens are refused without a review. ServiceAccount tokens are
    // about 1 KB.
    size_t max_token_bytes = 8192;
    std::function<absl::Time()> clock;  // absl::Now when empty
  };

  TokenReviewAuthenticator(std::unique_ptr<kube::HttpClient> http,
                           Options options);

  absl::StatusOr<AgentIdentity> Authenticate(const std::string& token) override;

  // Bytes the cache's keys and answers take (an estimate, for tests and
  // logs).
  size_t cache_bytes() const;

  // The TokenReview calls made (cache hits make none): answers by kind, and
  // how long each call took.
  struct ReviewStats {
    uint64_t authenticated = 0;  // the API server accepted the token
    uint64_t rejected = 0;       // ... refused it
    uint64_t failed = 0;         // no answer: transport error, non-2xx
    metrics::LatencyHistogram::Snapshot latency;
  };
  ReviewStats review_stats() const;

 private:
  struct Cached {
    absl::StatusOr<AgentIdentity> result;
    absl::Time expires;
  };
  // Answers by token digest. Every entry lives cache_ttl, so `order`
  // (insertion order) is expiry order; it may also hold stale keys of
  // entries replaced since, which are skipped.
  struct Cache {
    size_t capacity = 0;
    std::map<std::string, Cached> entries;  // by the token's SHA-256
    std::deque<std::pair<absl::Time, std::string>> order;
  };

  absl::Time Now() const;
  // The review's verdict; `cacheable` false for answers that may change at
  // once (the check failed, the pod is not scheduled yet).
  absl::StatusOr<AgentIdentity> Check(const std::string& token,
                                      bool* cacheable);
  absl::StatusOr<AgentIdentity> NodeOfPod(AgentIdentity identity,
                                          bool* cacheable);
  static void Insert(Cache* cache, const std::string& key,
                     const absl::StatusOr<AgentIdentity>& result,
                     absl::Time now, absl::Time expires);

  const std::unique_ptr<kube::HttpClient> http_;
  const Options options_;

  mutable absl::Mutex mu_;
  Cache accepted_ ABSL_GUARDED_BY(mu_);
  Cache rejected_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> reviews_authenticated_{0};
  std::atomic<uint64_t> reviews_rejected_{0};
  std::atomic<uint64_t> reviews_failed_{0};
  metrics::LatencyHistogram review_latency_{
      metrics::LatencyHistogram::ApiCallBounds()};
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_AUTHENTICATOR_H_
