// Who may read captures through the aggregator's CaptureService: a caller's
// bearer token is authenticated with a TokenReview, and each namespace is
// decided with a SubjectAccessReview for verb get on
// captures.packetcapture.antrea.io (common/read_access.h), so ordinary RBAC
// Roles and RoleBindings grant read access per namespace.
//
// Answers are cached for `cache_ttl`, keyed by the token's SHA-256 (the token
// itself is kept only while its reviews run). API calls run on a few threads
// of its own; identical questions asked while one is pending share its
// answer, and at most `max_pending` distinct ones wait, so a flood of bogus
// tokens costs the API server at most `threads` reviews at a time and the
// caller gets RESOURCE_EXHAUSTED beyond that. Errors of the API itself are
// UNAVAILABLE and are not cached.
//
// Thread-safe. Destruction answers what is still queued with UNAVAILABLE,
// cancels the reviews in flight and joins its threads.
#ifndef AGGREGATOR_READ_AUTHORIZER_H_
#define AGGREGATOR_READ_AUTHORIZER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kube/http_client.h"
#include "common/read_access.h"

namespace pc::aggregator {

class ApiReadAuthorizer : public ReadAuthorizer {
 public:
  struct Options {
    // A token is first reviewed for the API server's own audiences (a plain
    // `kubectl create token SA`); when this is set, a token rejected there is
    // reviewed again for this audience (`--audience` of
    // `kubectl create token`), which the API server itself would refuse.
    std::string extra_audience;
    absl::Duration cache_ttl = absl::Seconds(10);
    // Per cache (tokens; token x namespace answers).
    size_t max_cache_entries = 10000;
    int threads = 2;
    size_t max_pending = 256;
    std::function<absl::Time()> clock;  // absl::Now when empty
  };

  ApiReadAuthorizer(std::unique_ptr<kube::HttpClient> http, Options options);
  ~ApiReadAuthorizer() override;

  void CanRead(const std::string& token,
               const std::vector<std::string>& namespaces, Done done) override;

 private:
  struct User {
    std::string username;
    std::string uid;
    std::vector<std::string> groups;
    std::map<std::string, std::vector<std::string>> extra;
  };

  // A map bounded in size whose entries expire; the oldest go first.
  template <typename V>
  class Cache {
   public:
    explicit Cache(size_t max_entries) : max_entries_(max_entries) {}
    const V* Find(const std::string& key, absl::Time now) const;
    void Put(const std::string& key, V value, absl::Time now,
             absl::Time expires);
    size_t size() const { return entries_.size(); }

   private:
    struct Entry {
      V value;
      absl::Time expires;
      uint64_t serial;
    };
    struct Order {
      absl::Time expires;
      uint64_t serial;
      std::string key;
    };
    void Drop(const Order& order);
    const size_t max_entries_;
    std::map<std::string, Entry> entries_;
    std::deque<Order> order_;  // insertion order = expiry order (one TTL)
    uint64_t next_serial_ = 0;
  };

  // Questions of one shape (token, namespaces) waiting or being reviewed.
  struct Job {
    std::string token;
    std::string digest;
    std::vector<std::string> namespaces;
    std::vector<Done> waiters;
  };

  absl::Time Now() const;
  // The whole answer from the caches, if they hold it.
  std::optional<absl::StatusOr<std::vector<bool>>> Cached(
      const std::string& digest, const std::vector<std::string>& namespaces,
      absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Work();
  // Blocking: the reviews one job needs (and the caches do not answer).
  absl::StatusOr<std::vector<bool>> Evaluate(const Job& job);
  absl::StatusOr<User> Authenticate(const std::string& token,
                                    const std::string& digest);

  const std::unique_ptr<kube::HttpClient> http_;
  const Options options_;
  std::atomic<bool> cancel_{false};

  absl::Mutex mu_;
  absl::CondVar work_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Cache<absl::StatusOr<User>> users_ ABSL_GUARDED_BY(mu_);
  Cache<bool> access_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);  // keys of jobs_
  std::vector<std::thread> threads_;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_READ_AUTHORIZER_H_
