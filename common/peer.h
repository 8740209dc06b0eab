// Who is calling: the loopback check that keeps pcap data off the network.
//
// CaptureService serves loopback peers without a token: users reach it with
// `kubectl port-forward`, which connects from the pod's (or, for the
// hostNetwork agent, the node's) loopback, and Kubernetes RBAC on
// pods/portforward is what authorizes them. The agent answers nobody else;
// the aggregator answers other peers only with a bearer token it checks
// (common/read_access.h).
#ifndef COMMON_PEER_H_
#define COMMON_PEER_H_

#include "absl/strings/string_view.h"

namespace pc {

// True when `peer`, as gRPC's ServerContext::peer() spells it, is a
// connection from loopback: "ipv4:127.x.y.z:port", "ipv6:[::1]:port" (also
// with URI-escaped brackets, and v4-mapped "::ffff:127.x.y.z"), or a unix
// domain socket (guarded by file permissions). Anything else, including
// strings that do not parse, is false.
bool IsLoopbackPeer(absl::string_view peer);

}  // namespace pc

#endif  // COMMON_PEER_H_
