#include "aggregator/authenticator.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/kube/kube_json.h"
#include "common/kube/pod_lookup.h"
#include "common/kube/token_review.h"
#include "common/sha256.h"

namespace pc::aggregator {
namespace {

// Text from the API server or a token goes into cached answers and logs cut
// to this, so an answer costs a bounded amount.
constexpr size_t kMaxQuoted = 256;

std::string Quote(absl::string_view text) {
  return kube::SanitizeUtf8(text, kMaxQuoted);
}

// The first value of a TokenReview extra, or "".
std::string Extra(const kube::TokenReviewResult& review, const char* key) {
  auto it = review.extra.find(key);
  if (it == review.extra.end() || it->second.empty()) return "";
  return Quote(it->second.front());
}

size_t IdentityBytes(const AgentIdentity& id) {
  return id.username.size() + id.node.size() + id.pod_namespace.size() +
         id.pod_name.size() + id.pod_uid.size();
}

}  // namespace

TokenReviewAuthenticator::TokenReviewAuthenticator(
    std::unique_ptr<kube::HttpClient> http, Options options)
    : http_(std::move(http)), options_(std::move(options)) {
  accepted_.capacity = options_.max_cache_entries;
  rejected_.capacity = options_.max_negative_cache_entries;
}

absl::Time TokenReviewAuthenticator::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

absl::StatusOr<AgentIdentity> TokenReviewAuthenticator::Authenticate(
    const std::string& token) {
  if (token.empty()) return absl::UnauthenticatedError("no token");
  if (token.size() > options_.max_token_bytes) {
    return absl::UnauthenticatedError(absl::StrCat(
        "token of ", token.size(), " bytes is longer than ",
        options_.max_token_bytes, " bytes: not a ServiceAccount token"));
  }
  const std::string key = Sha256(token);
  const absl::Time now = Now();
  {
    absl::MutexLock lock(&mu_);
    for (const Cache* cache : {&accepted_, &rejected_}) {
      auto it = cache->entries.find(key);
      if (it != cache->entries.end() && now < it->second.expires) {
        return it->second.result;
      }
    }
  }
  bool cacheable = true;
  absl::StatusOr<AgentIdentity> result = Check(token, &cacheable);
  if (!cacheable) return result;
  absl::MutexLock lock(&mu_);
  Insert(result.ok() ? &accepted_ : &rejected_, key, result, now,
         now + options_.cache_ttl);
  return result;
}

absl::StatusOr<AgentIdentity> TokenReviewAuthenticator::Check(
    const std::string& token, bool* cacheable) {
  const absl::Time asked = absl::Now();
  auto review = kube::ReviewToken(*http_, token, {options_.audience});
  review_latency_.Observe(absl::Now() - asked);
  ++(!review.ok()            ? reviews_failed_
     : review->authenticated ? reviews_authenticated_
                             : reviews_rejected_);
  if (!review.ok()) {
    *cacheable = false;  // the next hello tries again
    return absl::UnavailableError(
        absl::StrCat("cannot check the token (TokenReview failed): ",
                     Quote(review.status().message())));
  }
  if (!review->authenticated) {
    return absl::UnauthenticatedError(
        absl::StrCat("token rejected", review->error.empty() ? "" : ": ",
                     Quote(review->error), " (a token for audience ",
                     options_.audience, " is required)"));
  }
  if (review->username != options_.agent_identity) {
    return absl::PermissionDeniedError(absl::StrCat(
        "identity ", Quote(review->username),
        " may not report captures (expected ", options_.agent_identity, ")"));
  }
  AgentIdentity identity;
  identity.username = review->username;
  identity.pod_name = Extra(*review, kube::kPodNameExtra);
  identity.pod_uid = Extra(*review, kube::kPodUidExtra);
  identity.node = Extra(*review, kube::kNodeNameExtra);
  // A ServiceAccount token is bound to objects of the account's namespace.
  std::vector<std::string> parts = absl::StrSplit(identity.username, ':');
  if (parts.size() == 4 && parts[0] == "system" &&
      parts[1] == "serviceaccount") {
    identity.pod_namespace = parts[2];
  }
  if (identity.pod_name.empty() || identity.pod_uid.empty() ||
      identity.pod_namespace.empty()) {
    const std::string ns =
        identity.pod_namespace.empty() ? "<namespace>" : identity.pod_namespace;
    const std::string account =
        parts.size() == 4 ? parts[3] : "<service account>";
    return absl::PermissionDeniedError(absl::StrCat(
        "token is not bound to a Pod, so the node it reports for cannot be "
        "verified: use the agent DaemonSet's projected token "
        "(serviceAccountToken volume with audience ",
        options_.audience, ") or mint one with `kubectl create token ", account,
        " -n ", ns, " --audience ", options_.audience,
        " --bound-object-kind Pod --bound-object-name <agent pod on the "
        "node>`"));
  }
  if (!identity.node.empty()) return identity;
  return NodeOfPod(std::move(identity), cacheable);
}

// Older API servers name only the pod: its node is the Pod's spec.nodeName,
// provided it is still the pod the token was minted for.
absl::StatusOr<AgentIdentity> TokenReviewAuthenticator::NodeOfPod(
    AgentIdentity identity, bool* cacheable) {
  const std::string pod =
      absl::StrCat(identity.pod_namespace, "/", identity.pod_name);
  auto found = kube::GetPod(*http_, identity.pod_namespace, identity.pod_name);
  if (!found.ok()) {
    if (found.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError(absl::StrCat(
          "token is bound to pod ", pod, ", which no longer exists"));
    }
    *cacheable = false;
    const bool forbidden =
        found.status().code() == absl::StatusCode::kPermissionDenied;
    return absl::UnavailableError(absl::StrCat(
        "cannot read pod ", pod,
        " to learn the agent's node: ", Quote(found.status().message()),
        forbidden ? absl::StrCat(" (the aggregator's ServiceAccount needs get "
                                 "pods in namespace ",
                                 identity.pod_namespace, ")")
                  : ""));
  }
  if (found->metadata().uid() != identity.pod_uid) {
    return absl::UnauthenticatedError(absl::StrCat(
        "token is bound to pod ", pod, " with uid ", identity.pod_uid,
        ", which no longer exists (that name "
        "now has uid ",
        Quote(found->metadata().uid()), ")"));
  }
  if (found->spec().node_name().empty()) {
    *cacheable = false;
    return absl::PermissionDeniedError(absl::StrCat(
        "token is bound to pod ", pod, ", which is not on a node yet"));
  }
  identity.node = Quote(found->spec().node_name());
  return identity;
}

void TokenReviewAuthenticator::Insert(
    Cache* cache, const std::string& key,
    const absl::StatusOr<AgentIdentity>& result, absl::Time now,
    absl::Time expires) {
  if (cache->capacity == 0) return;
  while (!cache->order.empty() && (cache->order.front().first <= now ||
                                   cache->entries.size() >= cache->capacity)) {
    const auto [when, old] = cache->order.front();
    cache->order.pop_front();
    auto it = cache->entries.find(old);
    if (it != cache->entries.end() && it->second.expires == when) {
      cache->entries.erase(it);
    }
  }
  cache->entries[key] = Cached{result, expires};
  cache->order.emplace_back(expires, key);
}

size_t TokenReviewAuthenticator::cache_bytes() const {
  absl::MutexLock lock(&mu_);
  size_t bytes = 0;
  for (const Cache* cache : {&accepted_, &rejected_}) {
    bytes += cache->order.size() * sizeof(cache->order.front());
    for (const auto& [key, cached] : cache->entries) {
      bytes += sizeof(key) + sizeof(cached);
      bytes += cached.result.ok() ? IdentityBytes(*cached.result)
                                  : cached.result.status().message().size();
    }
  }
  return bytes;
}

TokenReviewAuthenticator::ReviewStats TokenReviewAuthenticator::review_stats()
    const {
  ReviewStats stats;
  stats.authenticated = reviews_authenticated_.load();
  stats.rejected = reviews_rejected_.load();
  stats.failed = reviews_failed_.load();
  stats.latency = review_latency_.Take();
  return stats;
}

}  // namespace pc::aggregator
