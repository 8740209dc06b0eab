#include "common/kube/backoff.h"

#include <set>

#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

TEST(BackoffTest, DoublesFromInitialToMaxWithinJitterBounds) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Backoff backoff(absl::Milliseconds(800), absl::Seconds(30), 0.2, seed);
    const double want_base[] = {0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30, 30};
    for (double base : want_base) {
      double got = absl::ToDoubleSeconds(backoff.Next());
      EXPECT_GE(got, base - 1e-9) << "seed " << seed;
      EXPECT_LT(got, base * 1.2 + 1e-9) << "seed " << seed;
    }
  }
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff(absl::Milliseconds(800), absl::Seconds(30), 0.2, 7);
  for (int i = 0; i < 8; ++i) backoff.Next();
  EXPECT_GE(backoff.Next(), absl::Seconds(30));
  backoff.Reset();
  absl::Duration first = backoff.Next();
  EXPECT_GE(first, absl::Milliseconds(800));
  EXPECT_LT(first, absl::Milliseconds(960));
}

TEST(BackoffTest, JitterSpreadsAgents) {
  std::set<int64_t> firsts;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Backoff backoff(absl::Milliseconds(800), absl::Seconds(30), 0.2, seed);
    firsts.insert(absl::ToInt64Microseconds(backoff.Next()));
  }
  EXPECT_GT(firsts.size(), 15u);
}

TEST(BackoffTest, NoJitterIsExact) {
  Backoff backoff(absl::Milliseconds(100), absl::Milliseconds(250), 0, 1);
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(100));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(200));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(250));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(250));
}

}  // namespace
}  // namespace kube
}  // namespace pc
