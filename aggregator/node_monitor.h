// Ends the captures of nodes that are gone. Without it, a node that never
// comes back (deleted, powered off) leaves its captures RUNNING forever:
// they never expire, are never evicted, and follow downloads never end.
//
// A node counts as gone when no agent stream of it has been open for
// `gone_after` and its Node object is deleted or not Ready; then its
// captures are marked gone (CaptureStore::MarkGone): STOPPED, retention
// starting now, follow downloads ending. Nodes with captures on them that no
// stream has reported since start (the aggregator restarted) count as away
// since the monitor was created. An API error changes nothing that round.
//
// The ingest service reports streams (Connected/Disconnected); Tick() runs on
// the aggregator's maintenance loop. Thread-safe; Tick() looks nodes up
// without holding the monitor's lock.
#ifndef AGGREGATOR_NODE_MONITOR_H_
#define AGGREGATOR_NODE_MONITOR_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "aggregator/capture_store.h"
#include "common/kube/http_client.h"

namespace pc::aggregator {

enum class NodeState { kReady, kNotReady, kGone };

// How a node is looked up; an error means "unknown this time".
using NodeLookup =
    std::function<absl::StatusOr<NodeState>(const std::string& node)>;

// The state a Node object (JSON) shows: kReady iff its Ready condition's
// status is "True" (False, Unknown or no Ready condition: kNotReady).
// InvalidArgument if it is not a JSON object.
absl::StatusOr<NodeState> ParseNodeState(absl::string_view json);

// GET /api/v1/nodes/<node>: 404 is kGone, 200 is ParseNodeState(body),
// anything else an error (kube::HttpError). Needs RBAC `get` on nodes.
absl::StatusOr<NodeState> LookUpNode(kube::HttpClient& client,
                                     const std::string& node);

struct NodeMonitorOptions {
  // How long a node's agent must have been away before the Node is checked.
  absl::Duration gone_after = absl::Minutes(5);
  // A node found Ready (or not found out about: API error) is looked up
  // again at most this often.
  absl::Duration recheck_every = absl::Seconds(30);
  // Injected for tests; absl::Now when empty.
  std::function<absl::Time()> clock;
};

class NodeMonitor {
 public:
  // `store` must outlive the monitor.
  NodeMonitor(CaptureStore* store, NodeLookup lookup,
              NodeMonitorOptions options);

  // A stream of `node`'s agent was accepted / has ended. A node may have
  // several streams at once (a reconnect before the old stream's end).
  void Connected(const std::string& node);
  void Disconnected(const std::string& node);

  // Marks gone the captures of every node that is gone now; returns those
  // nodes.
  std::vector<std::string> Tick();

 private:
  struct Node {
    int streams = 0;
    absl::Time away_since;  // when streams last dropped to 0
    absl::Time next_check = absl::InfinitePast();
  };
  absl::Time Now() const;

  CaptureStore* const store_;
  const NodeLookup lookup_;
  const NodeMonitorOptions options_;
  const absl::Time started_;

  absl::Mutex mu_;
  std::map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_NODE_MONITOR_H_
