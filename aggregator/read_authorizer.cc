#include "aggregator/read_authorizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kube/subject_access_review.h"
#include "common/kube/token_review.h"
#include "common/log.h"
#include "common/sha256.h"

namespace pc::aggregator {

namespace {

// Cache and job keys: the digest has a fixed size and each namespace carries
// its length, so no two questions share a key whatever the strings hold.
std::string AccessKey(const std::string& digest, const std::string& ns) {
  return absl::StrCat(digest, ns.size(), ":", ns);
}

std::string JobKey(const std::string& digest,
                   const std::vector<std::string>& namespaces) {
  std::string key = digest;
  for (const std::string& ns : namespaces) {
    absl::StrAppend(&key, ns.size(), ":", ns);
  }
  return key;
}

}  // namespace

// ---- Cache ----

template <typename V>
const V* ApiReadAuthorizer::Cache<V>::Find(const std::string& key,
                                           absl::Time now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || now >= it->second.expires) return nullptr;
  return &it->second.value;
}

template <typename V>
void ApiReadAuthorizer::Cache<V>::Drop(const Order& order) {
  auto it = entries_.find(order.key);
  // A key put again later has a newer serial: that entry stays.
  if (it != entries_.end() && it->second.serial == order.serial) {
    entries_.erase(it);
  }
}

template <typename V>
void ApiReadAuthorizer::Cache<V>::Put(const std::string& key, V value,
                                      absl::Time now, absl::Time expires) {
  while (!order_.empty() && order_.front().expires <= now) {
    Drop(order_.front());
    order_.pop_front();
  }
  const uint64_t serial = next_serial_++;
  entries_.insert_or_assign(key, Entry{std::move(value), expires, serial});
  order_.push_back(Order{expires, serial, key});
  while (entries_.size() > max_entries_ && !order_.empty()) {
    Drop(order_.front());
    order_.pop_front();
  }
}

// ---- ApiReadAuthorizer ----

ApiReadAuthorizer::ApiReadAuthorizer(std::unique_ptr<kube::HttpClient> http,
                                     Options options)
    : http_(std::move(http)),
      options_(std::move(options)),
      users_(options_.max_cache_entries),
      access_(options_.max_cache_entries) {
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { Work(); });
  }
}

ApiReadAuthorizer::~ApiReadAuthorizer() {
  std::vector<Done> abandoned;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (const std::string& key : queue_) {
      auto it = jobs_.find(key);
      for (Done& done : it->second.waiters)
        abandoned.push_back(std::move(done));
      jobs_.erase(it);
    }
    queue_.clear();
    work_.SignalAll();
  }
  cancel_ = true;  // reviews in flight return within ~100 ms
  for (Done& done : abandoned) {
    done(absl::UnavailableError("the aggregator is shutting down"));
  }
  for (std::thread& thread : threads_) thread.join();
}

absl::Time ApiReadAuthorizer::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

std::optional<absl::StatusOr<std::vector<bool>>> ApiReadAuthorizer::Cached(
    const std::string& digest, const std::vector<std::string>& namespaces,
    absl::Time now) {
  const absl::StatusOr<User>* user = users_.Find(digest, now);
  if (user == nullptr) return std::nullopt;
  if (!user->ok()) return absl::StatusOr<std::vector<bool>>(user->status());
  std::vector<bool> allowed;
  for (const std::string& ns : namespaces) {
    const bool* answer = access_.Find(AccessKey(digest, ns), now);
    if (answer == nullptr) return std::nullopt;
    allowed.push_back(*answer);
  }
  return absl::StatusOr<std::vector<bool>>(std::move(allowed));
}

void ApiReadAuthorizer::CanRead(const std::string& token,
                                const std::vector<std::string>& namespaces,
                                Done done) {
  if (token.empty()) {
    done(absl::UnauthenticatedError("empty bearer token"));
    return;
  }
  std::string digest = Sha256(token);
  std::optional<absl::StatusOr<std::vector<bool>>> answer;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      answer = absl::UnavailableError("the aggregator is shutting down");
    } else {
      answer = Cached(digest, namespaces, Now());
    }
    if (!answer) {
      std::string key = JobKey(digest, namespaces);
      auto it = jobs_.find(key);
      if (it != jobs_.end()) {
        it->second.waiters.push_back(std::move(done));
        return;
      }
      if (jobs_.size() >= options_.max_pending) {
        answer = absl::ResourceExhaustedError(
            "too many read authorizations pending at the aggregator; retry");
      } else {
        Job& job = jobs_[key];
        job.token = token;
        job.digest = std::move(digest);
        job.namespaces = namespaces;
        job.waiters.push_back(std::move(done));
        queue_.push_back(std::move(key));
        work_.Signal();
        return;
      }
    }
  }
  done(*std::move(answer));
}

void ApiReadAuthorizer::Work() {
  while (true) {
    std::string key;
    Job job;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && queue_.empty()) work_.Wait(&mu_);
      if (stopping_) return;
      key = std::move(queue_.front());
      queue_.pop_front();
      // The job stays in jobs_ (without its token) so that the same question
      // asked meanwhile joins it.
      Job& queued = jobs_.at(key);
      job.token = std::move(queued.token);
      job.digest = queued.digest;
      job.namespaces = queued.namespaces;
    }
    absl::StatusOr<std::vector<bool>> answer = Evaluate(job);
    std::vector<Done> waiters;
    {
      absl::MutexLock lock(&mu_);
      auto it = jobs_.find(key);
      waiters = std::move(it->second.waiters);
      jobs_.erase(it);
    }
    for (Done& done : waiters) done(answer);
  }
}

absl::StatusOr<ApiReadAuthorizer::User> ApiReadAuthorizer::Authenticate(
    const std::string& token, const std::string& digest) {
  {
    absl::MutexLock lock(&mu_);
    if (const absl::StatusOr<User>* user = users_.Find(digest, Now())) {
      return *user;
    }
  }
  auto review = kube::ReviewToken(*http_, token, {}, &cancel_);
  if (review.ok() && !review->authenticated &&
      !options_.extra_audience.empty()) {
    auto again =
        kube::ReviewToken(*http_, token, {options_.extra_audience}, &cancel_);
    if (!again.ok() || again->authenticated) review = std::move(again);
  }
  if (!review.ok()) {
    // Not cached: the next call asks again.
    return absl::UnavailableError(
        absl::StrCat("cannot check the token (TokenReview failed): ",
                     review.status().message()));
  }
  absl::StatusOr<User> user;
  if (!review->authenticated) {
    LogLine("read_token_rejected", {{"reason", review->error}});
    user = absl::UnauthenticatedError(
        absl::StrCat("bearer token rejected", review->error.empty() ? "" : ": ",
                     review->error));
  } else {
    user = User{review->username, review->uid, review->groups, review->extra};
  }
  const absl::Time now = Now();
  absl::MutexLock lock(&mu_);
  users_.Put(digest, user, now, now + options_.cache_ttl);
  return user;
}

absl::StatusOr<std::vector<bool>> ApiReadAuthorizer::Evaluate(const Job& job) {
  absl::StatusOr<User> user = Authenticate(job.token, job.digest);
  if (!user.ok()) return user.status();
  std::vector<bool> allowed;
  for (const std::string& ns : job.namespaces) {
    const std::string key = AccessKey(job.digest, ns);
    {
      absl::MutexLock lock(&mu_);
      if (const bool* answer = access_.Find(key, Now())) {
        allowed.push_back(*answer);
        continue;
      }
    }
    kube::AccessReviewRequest request;
    request.namespace_ = ns;
    request.verb = kReadVerb;
    request.group = kCaptureApiGroup;
    request.resource = kCaptureResource;
    request.user = user->username;
    request.uid = user->uid;
    request.groups = user->groups;
    request.extra = user->extra;
    auto review = kube::ReviewAccess(*http_, request, &cancel_);
    if (!review.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot check read access (SubjectAccessReview "
                       "failed): ",
                       review.status().message()));
    }
    LogLine("read_access", {{"user", user->username},
                            {"namespace", ns},
                            {"allowed", review->allowed ? "true" : "false"},
                            {"reason", review->reason},
                            {"error", review->evaluation_error}});
    allowed.push_back(review->allowed);
    // An authorizer that could not decide is asked again next time.
    if (!review->evaluation_error.empty() && !review->allowed) continue;
    const absl::Time now = Now();
    absl::MutexLock lock(&mu_);
    access_.Put(key, review->allowed, now, now + options_.cache_ttl);
  }
  return allowed;
}

}  // namespace pc::aggregator
