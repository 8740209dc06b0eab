#include "aggregator/aggregator_metrics.h"

#include <map>

#include "common/metrics/families.h"

namespace pc::aggregator {

using metrics::Counter;
using metrics::Gauge;
using metrics::Histogram;

std::vector<prometheus::MetricFamily> AggregatorMetrics::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  std::map<int, int> by_state;
  for (const auto& c : registry_->List()) ++by_state[c.state()];
  auto captures = Gauge("packetcapture_aggregator_captures",
                        "Captures the aggregator holds, by state.");
  for (const auto& [state, name] : metrics::CaptureStateLabels()) {
    captures.Add(by_state[state], {{"state", name}});
  }
  out.push_back(captures.Build());

  const StoreStats s = store_->stats();
  out.push_back(Counter("packetcapture_aggregator_ingest_bytes_total",
                        "pcap bytes stored from agents' chunks.")
                    .Add(s.bytes)
                    .Build());
  out.push_back(Counter("packetcapture_aggregator_ingest_chunks_total",
                        "Chunks stored from agents.")
                    .Add(s.chunks)
                    .Build());
  out.push_back(Histogram("packetcapture_aggregator_flush_duration_seconds",
                          "How long a store append waited for its data or "
                          "commit log flush (fdatasync/syncfs, shared "
                          "rounds included).")
                    .AddHistogram(store_->flush_latency())
                    .Build());
  out.push_back(
      Gauge("packetcapture_aggregator_stored_bytes", "pcap bytes in the store.")
          .Add(store_->total_bytes())
          .Build());
  if (store_->max_bytes() > 0) {
    out.push_back(Gauge("packetcapture_aggregator_budget_bytes",
                        "The store's byte budget (--max_bytes); stopped "
                        "captures are evicted beyond it.")
                      .Add(store_->max_bytes())
                      .Build());
  }
  out.push_back(Counter("packetcapture_aggregator_evicted_captures_total",
                        "Stopped captures deleted, by reason: the byte "
                        "budget or the end of their retention.")
                    .Add(s.evicted_for_budget, {{"reason", "budget"}})
                    .Add(s.expired, {{"reason", "retention"}})
                    .Build());
  out.push_back(Counter("packetcapture_aggregator_compactions_total",
                        "Object store: objects written by compacting a "
                        "sealed file's data objects.")
                    .Add(s.compactions)
                    .Build());
  out.push_back(Counter("packetcapture_aggregator_compacted_objects_total",
                        "Object store: data objects deleted because a "
                        "compacted object holds their bytes.")
                    .Add(s.objects_compacted)
                    .Build());
  if (!s.object_requests.empty()) {
    auto requests = Counter("packetcapture_aggregator_object_requests_total",
                            "Object store: requests sent (each attempt of a "
                            "retried one), by operation.");
    for (const auto& [op, n] : s.object_requests) {
      requests.Add(n, {{"operation", op}});
    }
    out.push_back(requests.Build());
  }
  out.push_back(Gauge("packetcapture_aggregator_open_files",
                      "Stored files whose descriptors are open.")
                    .Add(store_->open_files())
                    .Build());

  if (ingest_ != nullptr) {
    out.push_back(Gauge("packetcapture_aggregator_agent_streams",
                        "Open agent ingest streams.")
                      .Add(ingest_->active_streams())
                      .Build());
    out.push_back(Gauge("packetcapture_aggregator_unauthenticated_streams",
                        "Ingest streams whose hello is not accepted yet.")
                      .Add(ingest_->unauthenticated_streams())
                      .Build());
  }
  if (authenticator_ != nullptr) {
    const TokenReviewAuthenticator::ReviewStats r =
        authenticator_->review_stats();
    out.push_back(Counter("packetcapture_aggregator_token_reviews_total",
                          "TokenReview calls for agents' tokens, by "
                          "result (failed: no answer from the API server).")
                      .Add(r.authenticated, {{"result", "authenticated"}})
                      .Add(r.rejected, {{"result", "rejected"}})
                      .Add(r.failed, {{"result", "failed"}})
                      .Build());
    out.push_back(
        Histogram("packetcapture_aggregator_token_review_duration_seconds",
                  "How long TokenReview calls for agents' tokens took.")
            .AddHistogram(r.latency)
            .Build());
  }
  return out;
}

}  // namespace pc::aggregator
