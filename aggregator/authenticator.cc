#include "aggregator/authenticator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kube/token_review.h"

namespace pc::aggregator {

TokenReviewAuthenticator::TokenReviewAuthenticator(
    std::unique_ptr<kube::HttpClient> http, Options options)
    : http_(std::move(http)), options_(std::move(options)) {}

absl::Time TokenReviewAuthenticator::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

absl::StatusOr<AgentIdentity> TokenReviewAuthenticator::Authenticate(
    const std::string& token) {
  if (token.empty()) return absl::UnauthenticatedError("no token");
  const absl::Time now = Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(token);
    if (it != cache_.end() && now < it->second.expires)
      return it->second.result;
  }
  auto review = kube::ReviewToken(*http_, token, {options_.audience});
  if (!review.ok()) {
    // Not cached: the next hello tries again.
    return absl::UnavailableError(
        absl::StrCat("cannot check the token (TokenReview failed): ",
                     review.status().message()));
  }
  absl::StatusOr<AgentIdentity> result;
  if (!review->authenticated) {
    result = absl::UnauthenticatedError(absl::StrCat(
        "token rejected", review->error.empty() ? "" : ": ", review->error,
        " (a token for audience ", options_.audience, " is required)"));
  } else if (review->username != options_.agent_identity) {
    result = absl::PermissionDeniedError(absl::StrCat(
        "identity ", review->username, " may not report captures (expected ",
        options_.agent_identity, ")"));
  } else {
    AgentIdentity identity;
    identity.username = review->username;
    auto node = review->extra.find(kNodeNameExtra);
    if (node != review->extra.end() && !node->second.empty()) {
      identity.node = node->second.front();
    }
    result = identity;
  }
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= options_.max_cache_entries) {
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = now >= it->second.expires ? cache_.erase(it) : std::next(it);
    }
    if (cache_.size() >= options_.max_cache_entries) cache_.clear();
  }
  cache_[token] = Cached{result, now + options_.cache_ttl};
  return result;
}

}  // namespace pc::aggregator
