// The agent's Prometheus metrics, built at scrape time from state the agent
// keeps anyway: the capture manager's statuses (a CaptureRegistry) and the
// uplink's counters. Nothing on the capture path updates a metric.
//
// Counters that must not go down while captures come and go (bytes and
// packets captured, kernel drops, tcpdump restarts) are accumulated here from
// the registry's change notifications: per ring file, growth of the same
// generation counts as written, and a replaced generation counts as having
// reached tcpdump's -C size (it rotates only past it, as SlotLedger assumes),
// plus what the new one holds. The capture manager publishes every 500 ms,
// so packets written and overwritten between two publications are missed
// (bytes are not: the rotation size bounds them).
//
// Cardinality: node totals carry no capture labels; per-pod series carry
// namespace and pod only, one per annotated Pod of the node (bounded by the
// node's Pods), and end when the Pod's last capture leaves the registry.
//
// Thread-safe: the registry listener runs on the capture manager's thread,
// Collect() on the metrics server's.
#ifndef NODE_AGENT_AGENT_METRICS_H_
#define NODE_AGENT_AGENT_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/capture_registry.h"
#include "node_agent/uplink.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace pc::agent {

class AgentMetrics : public prometheus::Collectable {
 public:
  // `registry`: the capture manager's own (not the served view); it must
  // outlive this. `uplink_stats`: the uplink's counters, empty without an
  // aggregator (no uplink families then).
  AgentMetrics(CaptureRegistry* registry,
               std::function<Uplink::Stats()> uplink_stats);
  ~AgentMetrics() override;

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct FileSeen {
    uint64_t generation = 0;
    uint64_t size = 0;
    uint64_t packets = 0;
  };
  struct CaptureSeen {
    std::pair<std::string, std::string> pod;  // namespace, name
    std::map<std::string, FileSeen> files;    // by file name
    uint64_t dropped = 0;
    uint64_t restarts = 0;
  };
  struct Totals {
    uint64_t bytes = 0;
    uint64_t packets = 0;
    uint64_t dropped = 0;
    uint64_t restarts = 0;
    void Add(const Totals& d) {
      bytes += d.bytes;
      packets += d.packets;
      dropped += d.dropped;
      restarts += d.restarts;
    }
  };
  struct PodSeen {
    Totals totals;
    int captures = 0;  // in the registry now
  };

  void OnEvent(const CaptureRegistry::Event& event);
  // What changed since `seen` (updated to `status`); never negative.
  static Totals Growth(const packetcapture::v1::Capture& status,
                       CaptureSeen* seen);

  CaptureRegistry* const registry_;
  const std::function<Uplink::Stats()> uplink_stats_;
  int subscription_ = 0;

  mutable absl::Mutex mu_;
  std::map<std::string, CaptureSeen> captures_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, PodSeen> pods_
      ABSL_GUARDED_BY(mu_);
  Totals node_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::agent

#endif  // NODE_AGENT_AGENT_METRICS_H_
