#include "common/metrics/latency_histogram.h"

#include <algorithm>
#include <utility>

namespace pc::metrics {

LatencyHistogram::LatencyHistogram(std::vector<double> bounds_seconds)
    : bounds_(std::move(bounds_seconds)),
      buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void LatencyHistogram::Observe(absl::Duration latency) {
  if (latency < absl::ZeroDuration()) latency = absl::ZeroDuration();
  const double seconds = absl::ToDoubleSeconds(latency);
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), seconds) -
                   bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(absl::ToInt64Nanoseconds(latency)),
                    std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::Take() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    s.counts.push_back(cumulative);
  }
  s.count =
      cumulative + buckets_[bounds_.size()].load(std::memory_order_relaxed);
  s.sum_seconds =
      static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return s;
}

std::vector<double> LatencyHistogram::FlushBounds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,  0.5,    1,     2.5,  5};
}

std::vector<double> LatencyHistogram::ApiCallBounds() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace pc::metrics
