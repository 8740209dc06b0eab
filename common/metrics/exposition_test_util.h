// Test helpers: a collector's output as Prometheus would scrape it (the text
// exposition format, from prometheus-cpp's own serializer) and that text
// parsed back into samples, so tests assert on what a scrape shows.
#ifndef COMMON_METRICS_EXPOSITION_TEST_UTIL_H_
#define COMMON_METRICS_EXPOSITION_TEST_UTIL_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace pc::metrics::testutil {

struct Exposition {
  // By series as written: `name` or `name{a="x",b="y"}` (labels sorted).
  std::map<std::string, double> samples;
  // By family name: "counter", "gauge", "histogram", ...
  std::map<std::string, std::string> types;

  // The sample's value, or -1 when there is no such series.
  double Get(const std::string& series) const;
};

std::string ScrapeText(const prometheus::Collectable& collectable);

// Parses the text format (# TYPE lines, samples, optional timestamps);
// InvalidArgument on a malformed line or a duplicate series.
absl::StatusOr<Exposition> ParseExposition(const std::string& text);

}  // namespace pc::metrics::testutil

#endif  // COMMON_METRICS_EXPOSITION_TEST_UTIL_H_
