#include "node_agent/agent_metrics.h"

#include <algorithm>
#include <utility>

#include "common/metrics/families.h"
#include "node_agent/capture.h"

namespace pc::agent {

using CaptureProto = packetcapture::v1::Capture;
using EventProto = packetcapture::v1::CaptureEvent;
using metrics::Counter;
using metrics::Gauge;

AgentMetrics::AgentMetrics(CaptureRegistry* registry,
                           std::function<Uplink::Stats()> uplink_stats)
    : registry_(registry), uplink_stats_(std::move(uplink_stats)) {
  subscription_ = registry_->Subscribe(
      [this](const CaptureRegistry::Event& event) { OnEvent(event); },
      /*initial=*/true);
}

AgentMetrics::~AgentMetrics() { registry_->Unsubscribe(subscription_); }

AgentMetrics::Totals AgentMetrics::Growth(const CaptureProto& status,
                                          CaptureSeen* seen) {
  Totals d;
  std::map<std::string, FileSeen> files;
  for (const auto& f : status.files()) {
    FileSeen now{f.generation(), f.size(), f.packets()};
    auto it = seen->files.find(f.name());
    if (it == seen->files.end()) {
      d.bytes += now.size;
      d.packets += now.packets;
    } else if (now.generation == it->second.generation &&
               now.size >= it->second.size) {
      d.bytes += now.size - it->second.size;
      d.packets += now.packets - std::min(now.packets, it->second.packets);
    } else {
      // The slot was reused: its previous content grew to tcpdump's -C size
      // before the rotation.
      d.bytes += std::max(it->second.size, kRingFileBytes) - it->second.size;
      d.bytes += now.size;
      d.packets += now.packets;
    }
    files[f.name()] = now;
  }
  seen->files = std::move(files);
  d.dropped = status.dropped_packets() > seen->dropped
                  ? status.dropped_packets() - seen->dropped
                  : 0;
  d.restarts = status.restarts() > seen->restarts
                   ? status.restarts() - seen->restarts
                   : 0;
  seen->dropped = std::max<uint64_t>(seen->dropped, status.dropped_packets());
  seen->restarts = std::max<uint64_t>(seen->restarts, status.restarts());
  return d;
}

void AgentMetrics::OnEvent(const CaptureRegistry::Event& event) {
  if (event.type() == EventProto::SYNCED) return;
  const CaptureProto& status = event.capture();
  absl::MutexLock lock(&mu_);
  auto it = captures_.find(status.id());
  if (event.type() == EventProto::DELETED) {
    if (it == captures_.end()) return;
    auto pod = pods_.find(it->second.pod);
    if (pod != pods_.end() && --pod->second.captures <= 0) pods_.erase(pod);
    captures_.erase(it);
    return;
  }
  if (it == captures_.end()) {
    it = captures_.emplace(status.id(), CaptureSeen()).first;
    it->second.pod = {status.namespace_(), status.pod()};
    ++pods_[it->second.pod].captures;
  }
  const Totals d = Growth(status, &it->second);
  node_.Add(d);
  pods_[it->second.pod].totals.Add(d);
}

std::vector<prometheus::MetricFamily> AgentMetrics::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  std::map<int, int> by_state;
  uint64_t stored = 0;
  for (const CaptureProto& c : registry_->List()) {
    ++by_state[c.state()];
    for (const auto& f : c.files()) stored += f.size();
  }
  auto captures =
      Gauge("packetcapture_agent_captures", "Captures of this node by state.");
  for (const auto& [state, name] : metrics::CaptureStateLabels()) {
    captures.Add(by_state[state], {{"state", name}});
  }
  out.push_back(captures.Build());
  out.push_back(Gauge("packetcapture_agent_stored_bytes",
                      "Bytes in the capture files on this node now.")
                    .Add(stored)
                    .Build());
  {
    absl::MutexLock lock(&mu_);
    out.push_back(Counter("packetcapture_agent_captured_bytes_total",
                          "Bytes tcpdump wrote to capture files.")
                      .Add(node_.bytes)
                      .Build());
    out.push_back(Counter("packetcapture_agent_captured_packets_total",
                          "Packets tcpdump wrote to capture files.")
                      .Add(node_.packets)
                      .Build());
    out.push_back(Counter("packetcapture_agent_kernel_dropped_packets_total",
                          "Packets the kernel dropped, as tcpdump counts "
                          "them.")
                      .Add(node_.dropped)
                      .Build());
    out.push_back(Counter("packetcapture_agent_tcpdump_restarts_total",
                          "tcpdump restarts after it exited on its own.")
                      .Add(node_.restarts)
                      .Build());
    auto pod_bytes = Counter("packetcapture_agent_pod_captured_bytes_total",
                             "Bytes tcpdump wrote for each captured Pod.");
    auto pod_packets = Counter("packetcapture_agent_pod_captured_packets_total",
                               "Packets tcpdump wrote for each captured Pod.");
    auto pod_dropped =
        Counter("packetcapture_agent_pod_kernel_dropped_packets_total",
                "Packets the kernel dropped for each captured Pod.");
    for (const auto& [pod, seen] : pods_) {
      const metrics::Labels labels{{"namespace", pod.first},
                                   {"pod", pod.second}};
      pod_bytes.Add(seen.totals.bytes, labels);
      pod_packets.Add(seen.totals.packets, labels);
      pod_dropped.Add(seen.totals.dropped, labels);
    }
    out.push_back(pod_bytes.Build());
    out.push_back(pod_packets.Build());
    out.push_back(pod_dropped.Build());
  }
  if (!uplink_stats_) return out;
  const Uplink::Stats s = uplink_stats_();
  out.push_back(Gauge("packetcapture_agent_uplink_connected",
                      "1 while the stream to the aggregator is up.")
                    .Add(s.connects > s.disconnects ? 1 : 0)
                    .Build());
  out.push_back(Counter("packetcapture_agent_uplink_connects_total",
                        "Connections the aggregator welcomed (the first "
                        "and every reconnect).")
                    .Add(s.connects)
                    .Build());
  out.push_back(Counter("packetcapture_agent_uplink_disconnects_total",
                        "Welcomed connections to the aggregator that ended.")
                    .Add(s.disconnects)
                    .Build());
  out.push_back(Counter("packetcapture_agent_uplink_ack_timeouts_total",
                        "Connections abandoned for want of an "
                        "acknowledgement.")
                    .Add(s.ack_timeouts)
                    .Build());
  out.push_back(Counter("packetcapture_agent_uplink_sent_bytes_total",
                        "pcap bytes sent to the aggregator.")
                    .Add(s.bytes_sent)
                    .Build());
  out.push_back(Counter("packetcapture_agent_uplink_acked_bytes_total",
                        "pcap bytes the aggregator acknowledged as stored.")
                    .Add(s.bytes_acked)
                    .Build());
  out.push_back(Counter("packetcapture_agent_uplink_chunks_total",
                        "Chunks sent to the aggregator.")
                    .Add(s.chunks_sent)
                    .Build());
  out.push_back(Gauge("packetcapture_agent_uplink_lag_bytes",
                      "Bytes in capture files not acknowledged by the "
                      "aggregator yet.")
                    .Add(s.lag_bytes)
                    .Build());
  out.push_back(Counter("packetcapture_agent_uplink_lost_bytes_total",
                        "Bytes the ring overwrote or the agent deleted "
                        "before the aggregator had them.")
                    .Add(s.bytes_lost)
                    .Build());
  return out;
}

}  // namespace pc::agent
