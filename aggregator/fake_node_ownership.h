// NodeOwnership for tests: leases as a cluster would hand them out (one
// holder per node, the epoch growing with every change of holder), shared
// by the replicas of one test, with expiry under the test's control.
// Test-only; thread-safe.
#ifndef AGGREGATOR_FAKE_NODE_OWNERSHIP_H_
#define AGGREGATOR_FAKE_NODE_OWNERSHIP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "aggregator/node_ownership.h"

namespace pc::aggregator::testutil {

// Leases as a cluster would hand them out: one holder per node, the epoch
// growing with every change of holder.
struct FakeLeases {
  absl::Mutex mu;
  std::map<std::string, LeaseHolder> holders ABSL_GUARDED_BY(mu);
  std::map<std::string, int64_t> epochs ABSL_GUARDED_BY(mu);
};

class FakeOwnership final : public NodeOwnership {
 public:
  FakeOwnership(FakeLeases* leases, std::string identity)
      : leases_(leases),
        identity_(std::move(identity)),
        address_(absl::StrCat(identity_, ".example:9091")) {}

  absl::StatusOr<LeaseHolder> Acquire(const std::string& node,
                                      LeaseHolder* other) override {
    absl::MutexLock lock(&leases_->mu);
    auto it = leases_->holders.find(node);
    if (it != leases_->holders.end() && it->second.identity != identity_) {
      if (other != nullptr) *other = it->second;
      return absl::FailedPreconditionError(
          absl::StrCat("node ", node, " is held by ", it->second.identity));
    }
    if (it == leases_->holders.end()) {
      it = leases_->holders
               .emplace(node, LeaseHolder{identity_, address_,
                                          ++leases_->epochs[node]})
               .first;
    }
    return it->second;
  }
  void Release(const std::string& node) override {
    absl::MutexLock lock(&leases_->mu);
    auto it = leases_->holders.find(node);
    if (it != leases_->holders.end() && it->second.identity == identity_) {
      leases_->holders.erase(it);
    }
  }
  bool Holds(const std::string& node) const override {
    absl::MutexLock lock(&leases_->mu);
    auto it = leases_->holders.find(node);
    return it != leases_->holders.end() && it->second.identity == identity_;
  }
  void SetOnLost(std::function<void(const std::string&)> on_lost) override {
    absl::MutexLock lock(&mu_);
    on_lost_ = std::move(on_lost);
  }
  // The lease expired: free for the next taker. `tell`: the renewal noticed.
  void Expire(const std::string& node, bool tell) {
    {
      absl::MutexLock lock(&leases_->mu);
      leases_->holders.erase(node);
    }
    std::function<void(const std::string&)> on_lost;
    {
      absl::MutexLock lock(&mu_);
      on_lost = on_lost_;
    }
    if (tell && on_lost) on_lost(node);
  }
  const std::string& address() const { return address_; }

 private:
  FakeLeases* const leases_;
  const std::string identity_;
  const std::string address_;
  absl::Mutex mu_;
  std::function<void(const std::string&)> on_lost_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::aggregator::testutil

#endif  // AGGREGATOR_FAKE_NODE_OWNERSHIP_H_
