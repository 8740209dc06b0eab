// A latency histogram with fixed bucket bounds, cheap enough for hot paths
// (a flush, a TokenReview call): Observe() is a few relaxed atomic adds and
// takes no lock. Kept free of any metrics library so the code it times does
// not depend on one; the metrics collectors read Snapshot()s.
//
// Thread-safe. A snapshot taken while observations run may be a few
// observations out of step between its buckets, count and sum (Prometheus
// tolerates that; each value on its own never goes down).
#ifndef COMMON_METRICS_LATENCY_HISTOGRAM_H_
#define COMMON_METRICS_LATENCY_HISTOGRAM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/time/time.h"

namespace pc::metrics {

class LatencyHistogram {
 public:
  struct Snapshot {
    // Upper bounds in seconds, ascending (+Inf is implied).
    std::vector<double> bounds;
    // Cumulative: counts[i] observations were <= bounds[i].
    std::vector<uint64_t> counts;
    uint64_t count = 0;  // every observation (the +Inf bucket)
    double sum_seconds = 0;
  };

  // `bounds_seconds` ascending and positive.
  explicit LatencyHistogram(std::vector<double> bounds_seconds);

  void Observe(absl::Duration latency);
  Snapshot Take() const;

  // Bounds for disk flushes (0.5 ms .. 5 s) and for API-server calls
  // (5 ms .. 10 s).
  static std::vector<double> FlushBounds();
  static std::vector<double> ApiCallBounds();

 private:
  const std::vector<double> bounds_;
  // Per bucket (not cumulative), the last one past every bound.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace pc::metrics

#endif  // COMMON_METRICS_LATENCY_HISTOGRAM_H_
