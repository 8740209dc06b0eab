// Which aggregator replica writes a node's captures: one at a time, decided
// by a Kubernetes Lease per node (NodeLeases); tests may decide it
// themselves.
#ifndef AGGREGATOR_NODE_OWNERSHIP_H_
#define AGGREGATOR_NODE_OWNERSHIP_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace pc::aggregator {

// Who holds a node: the replica's identity, the address agents and other
// replicas reach it at, and the epoch of its tenure (grows with every
// change of holder: a fencing number).
struct LeaseHolder {
  std::string identity;
  std::string address;
  int64_t epoch = 0;
};

// Thread-safe.
class NodeOwnership {
 public:
  virtual ~NodeOwnership() = default;
  // Takes the node (free, expired, or already ours) and keeps it until
  // Release. FailedPrecondition "node N is held by R at ADDR" (and *other
  // filled) when another replica holds it; Unavailable when it cannot be
  // decided now.
  virtual absl::StatusOr<LeaseHolder> Acquire(const std::string& node,
                                              LeaseHolder* other = nullptr) = 0;
  // Gives the node up so another replica can take it at once.
  virtual void Release(const std::string& node) = 0;
  // Held and renewed within the lease's duration.
  virtual bool Holds(const std::string& node) const = 0;
  // Told (from any thread) when a held node is lost: taken over, or not
  // renewed in time. Replacing the callback (also by nullptr) returns once
  // no call of the old one runs, so its owner may go right after; the
  // callback must not call SetOnLost.
  virtual void SetOnLost(std::function<void(const std::string& node)>) = 0;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_NODE_OWNERSHIP_H_
