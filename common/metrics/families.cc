#include "common/metrics/families.h"

#include <limits>

#include "proto/packetcapture.pb.h"

namespace pc::metrics {

FamilyBuilder::FamilyBuilder(std::string name, std::string help,
                             prometheus::MetricType type) {
  family_.name = std::move(name);
  family_.help = std::move(help);
  family_.type = type;
}

namespace {

prometheus::ClientMetric WithLabels(const Labels& labels) {
  prometheus::ClientMetric metric;
  for (const auto& [name, value] : labels)
    metric.label.push_back({name, value});
  return metric;
}

}  // namespace

FamilyBuilder& FamilyBuilder::Add(double value, const Labels& labels) {
  prometheus::ClientMetric metric = WithLabels(labels);
  switch (family_.type) {
    case prometheus::MetricType::Counter:
      metric.counter.value = value;
      break;
    case prometheus::MetricType::Gauge:
      metric.gauge.value = value;
      break;
    default:
      metric.untyped.value = value;
      break;
  }
  family_.metric.push_back(std::move(metric));
  return *this;
}

FamilyBuilder& FamilyBuilder::AddHistogram(
    const LatencyHistogram::Snapshot& snapshot, const Labels& labels) {
  prometheus::ClientMetric metric = WithLabels(labels);
  metric.histogram.sample_count = snapshot.count;
  metric.histogram.sample_sum = snapshot.sum_seconds;
  for (size_t i = 0; i < snapshot.bounds.size(); ++i) {
    metric.histogram.bucket.push_back({snapshot.counts[i], snapshot.bounds[i]});
  }
  // The text format needs the +Inf bucket spelled out.
  metric.histogram.bucket.push_back(
      {snapshot.count, std::numeric_limits<double>::infinity()});
  family_.metric.push_back(std::move(metric));
  return *this;
}

std::vector<std::pair<int, std::string>> CaptureStateLabels() {
  using packetcapture::v1::Capture;
  return {{Capture::PENDING, "pending"},
          {Capture::RUNNING, "running"},
          {Capture::STOPPED, "stopped"},
          {Capture::FAILED, "failed"}};
}

}  // namespace pc::metrics
