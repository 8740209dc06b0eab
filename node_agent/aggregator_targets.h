// Where the agent's next connection attempt goes (issue 12 §5): `--aggregator`
// is a comma-separated list of host:port; attempts rotate through it on
// failure. An aggregator replica that does not hold the node's Lease ends the
// stream with FAILED_PRECONDITION and trailing metadata
// `aggregator-redirect: host:port` (the holder); the next attempt goes there
// at once, once — if that fails too, back to the list (with backoff).
// A redirect comes from the network: it is checked (host:port syntax,
// bounded length) before it is followed.
//
// Pure logic, no I/O. Not thread-safe (the uplink thread owns it).
#ifndef NODE_AGENT_AGGREGATOR_TARGETS_H_
#define NODE_AGENT_AGGREGATOR_TARGETS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pc::agent {

inline constexpr size_t kMaxAddressBytes = 261;  // 253-char name + ":65535"

// OK when `address` is host:port: a DNS name or IPv4 address ([A-Za-z0-9.-_]
// labels) or a bracketed IPv6 address, then a port 1..65535.
absl::Status ValidateHostPort(absl::string_view address);

// "a:1, b:2" -> {"a:1", "b:2"}; each entry validated, at least one.
absl::StatusOr<std::vector<std::string>> ParseAggregatorList(
    absl::string_view list);

class AggregatorTargets {
 public:
  // `list` must be non-empty (see ParseAggregatorList).
  explicit AggregatorTargets(std::vector<std::string> list);

  // The address for the next attempt (a pending redirect first).
  const std::string& Next();
  // Whether the address Next() returned came from a redirect.
  bool redirected() const { return redirected_; }
  // The attempt that Next() started has ended (failed or disconnected)
  // without a redirect: the following one goes to the next list entry.
  void Failed();
  // The attempt ended with a redirect to `address`. False (nothing changes)
  // when the address is invalid, or when the attempt was itself a redirect
  // (only one hop: then this counts as Failed()).
  bool Redirect(absl::string_view address);
  // A redirect is pending: the next attempt should start without backoff.
  bool redirect_pending() const { return !pending_.empty(); }

 private:
  const std::vector<std::string> list_;
  size_t index_ = 0;
  std::string pending_;  // redirect not taken yet
  std::string current_;  // what Next() returned last
  bool redirected_ = false;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_AGGREGATOR_TARGETS_H_
