// The aggregator's Prometheus metrics, built at scrape time from the state
// its parts keep: the captures (CaptureRegistry), the store's counters and
// flush latencies, the ingest service's open streams and the
// authenticator's TokenReview calls. No capture or node labels: the series
// are the same few whatever the cluster's size.
//
// Thread-safe (every source is); Collect() runs on the metrics server's
// threads.
#ifndef AGGREGATOR_AGGREGATOR_METRICS_H_
#define AGGREGATOR_AGGREGATOR_METRICS_H_

#include <vector>

#include "aggregator/authenticator.h"
#include "aggregator/capture_store.h"
#include "aggregator/ingest_service.h"
#include "common/capture_registry.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace pc::aggregator {

class AggregatorMetrics : public prometheus::Collectable {
 public:
  // Not owned; each must outlive this. `ingest` and `authenticator` may be
  // null (their families are left out).
  AggregatorMetrics(const CaptureRegistry* registry, const CaptureStore* store,
                    const IngestServiceImpl* ingest,
                    const TokenReviewAuthenticator* authenticator)
      : registry_(registry),
        store_(store),
        ingest_(ingest),
        authenticator_(authenticator) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const CaptureRegistry* const registry_;
  const CaptureStore* const store_;
  const IngestServiceImpl* const ingest_;
  const TokenReviewAuthenticator* const authenticator_;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_AGGREGATOR_METRICS_H_
