#include "common/daemon.h"

#include <sys/resource.h>

#include "gtest/gtest.h"

namespace pc {
namespace {

TEST(RaiseOpenFileLimitTest, RaisesTheSoftLimitToTheHardOne) {
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max == RLIM_INFINITY || saved.rlim_max < 512) {
    GTEST_SKIP() << "needs a finite hard limit of at least 512";
  }
  struct rlimit low = saved;
  low.rlim_cur = 256;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

  auto raised = RaiseOpenFileLimit();
  struct rlimit now;
  getrlimit(RLIMIT_NOFILE, &now);
  // Already at the hard limit: nothing to do.
  auto again = RaiseOpenFileLimit();
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->before, 256u);
  EXPECT_EQ(raised->after, saved.rlim_max);
  EXPECT_EQ(now.rlim_cur, saved.rlim_max);
  EXPECT_EQ(now.rlim_max, saved.rlim_max);  // the hard limit is left alone
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->before, again->after);
}

}  // namespace
}  // namespace pc
