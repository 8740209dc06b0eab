// Small builders for prometheus::MetricFamily values, for collectors that
// snapshot a daemon's own state at scrape time (prometheus::Collectable)
// instead of keeping prometheus-cpp metric objects beside it. Pure
// functions; thread-safe.
#ifndef COMMON_METRICS_FAMILIES_H_
#define COMMON_METRICS_FAMILIES_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/metrics/latency_histogram.h"
#include "prometheus/metric_family.h"

namespace pc::metrics {

using Labels = std::map<std::string, std::string>;

// A family of one type; Add() appends one sample per label set.
class FamilyBuilder {
 public:
  FamilyBuilder(std::string name, std::string help,
                prometheus::MetricType type);

  FamilyBuilder& Add(double value, const Labels& labels = {});
  // For histogram families.
  FamilyBuilder& AddHistogram(const LatencyHistogram::Snapshot& snapshot,
                              const Labels& labels = {});

  // Moves the family out: call once, last.
  prometheus::MetricFamily Build() { return std::move(family_); }

 private:
  prometheus::MetricFamily family_;
};

inline FamilyBuilder Gauge(std::string name, std::string help) {
  return FamilyBuilder(std::move(name), std::move(help),
                       prometheus::MetricType::Gauge);
}
inline FamilyBuilder Counter(std::string name, std::string help) {
  return FamilyBuilder(std::move(name), std::move(help),
                       prometheus::MetricType::Counter);
}
inline FamilyBuilder Histogram(std::string name, std::string help) {
  return FamilyBuilder(std::move(name), std::move(help),
                       prometheus::MetricType::Histogram);
}

// The lower-case names of packetcapture.v1.Capture's states, for a `state`
// label: "pending", "running", "stopped", "failed".
std::vector<std::pair<int, std::string>> CaptureStateLabels();

}  // namespace pc::metrics

#endif  // COMMON_METRICS_FAMILIES_H_
