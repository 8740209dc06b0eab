#include "common/metrics/latency_histogram.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace pc::metrics {
namespace {

TEST(LatencyHistogramTest, BucketsAreCumulativeAndInclusive) {
  LatencyHistogram h({0.001, 0.01, 0.1});
  h.Observe(absl::Microseconds(500));  // <= 1 ms
  h.Observe(absl::Milliseconds(1));    // exactly on a bound: that bucket
  h.Observe(absl::Milliseconds(50));   // <= 100 ms
  h.Observe(absl::Seconds(2));         // past every bound
  h.Observe(-absl::Seconds(1));        // clamped to 0
  LatencyHistogram::Snapshot s = h.Take();
  EXPECT_EQ(s.bounds, (std::vector<double>{0.001, 0.01, 0.1}));
  EXPECT_EQ(s.counts, (std::vector<uint64_t>{3, 3, 4}));
  EXPECT_EQ(s.count, 5u);
  EXPECT_NEAR(s.sum_seconds, 0.0005 + 0.001 + 0.05 + 2, 1e-9);
}

TEST(LatencyHistogramTest, ConcurrentObservationsAreAllCounted) {
  LatencyHistogram h(LatencyHistogram::FlushBounds());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.Observe(absl::Milliseconds(3));
    });
  }
  for (auto& t : threads) t.join();
  LatencyHistogram::Snapshot s = h.Take();
  EXPECT_EQ(s.count, 40000u);
  EXPECT_NEAR(s.sum_seconds, 120.0, 1e-6);
}

}  // namespace
}  // namespace pc::metrics
