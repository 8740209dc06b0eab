#include "node_agent/aggregator_targets.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

TEST(ValidateHostPort, AcceptsWhatAgentsMeet) {
  for (const char* ok :
       {"198.18.0.1:9090", "capture-aggregator.kube-system.svc:9090",
        "localhost:1", "[fd00::1]:9090", "[::1]:65535", "my_host:80"}) {
    EXPECT_TRUE(ValidateHostPort(ok).ok()) << ok;
  }
}

TEST(ValidateHostPort, RejectsGarbage) {
  const std::string long_host(254, 'a');
  for (const std::string& bad : std::vector<std::string>{
           "", ":9090", "198.18.0.1", "198.18.0.1:", "198.18.0.1:0",
           "198.18.0.1:65536", "198.18.0.1:+80", "198.18.0.1:80x", "a b:1",
           "a..b:1", "-a:1", "a/b:1", "dns:///a:1", "[fd00::1:9090",
           "[zz::1]:9090", "fd00::1:9090", "a\n:1", long_host + ":1",
           std::string("a\0b:1", 5)}) {
    EXPECT_FALSE(ValidateHostPort(bad).ok()) << bad;
  }
}

TEST(ParseAggregatorList, SplitsAndValidates) {
  auto list = ParseAggregatorList("198.18.0.1:9090, 198.18.0.2:9090");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list,
            (std::vector<std::string>{"198.18.0.1:9090", "198.18.0.2:9090"}));
  EXPECT_FALSE(ParseAggregatorList("").ok());
  EXPECT_FALSE(ParseAggregatorList("198.18.0.1:9090,").ok());
  EXPECT_FALSE(ParseAggregatorList("198.18.0.1:9090,,a:1").ok());
}

TEST(AggregatorTargets, RotatesOnFailure) {
  AggregatorTargets t({"a:1", "b:2", "c:3"});
  EXPECT_EQ(t.Next(), "a:1");
  t.Failed();
  EXPECT_EQ(t.Next(), "b:2");
  t.Failed();
  EXPECT_EQ(t.Next(), "c:3");
  t.Failed();
  EXPECT_EQ(t.Next(), "a:1");
  EXPECT_FALSE(t.redirected());
}

TEST(AggregatorTargets, FollowsOneRedirectThenBackToTheList) {
  AggregatorTargets t({"svc:9090", "b:2"});
  EXPECT_EQ(t.Next(), "svc:9090");
  EXPECT_TRUE(t.Redirect("198.18.0.7:9090"));
  EXPECT_TRUE(t.redirect_pending());
  EXPECT_EQ(t.Next(), "198.18.0.7:9090");
  EXPECT_TRUE(t.redirected());
  EXPECT_FALSE(t.redirect_pending());
  // The redirected replica redirects again: not followed (one hop).
  EXPECT_FALSE(t.Redirect("198.18.0.8:9090"));
  EXPECT_FALSE(t.redirect_pending());
  // Back to the entry that redirected, then rotation as before.
  EXPECT_EQ(t.Next(), "svc:9090");
  EXPECT_FALSE(t.redirected());
  t.Failed();
  EXPECT_EQ(t.Next(), "b:2");
}

TEST(AggregatorTargets, FailedRedirectGoesBackToTheList) {
  AggregatorTargets t({"svc:9090"});
  t.Next();
  ASSERT_TRUE(t.Redirect("198.18.0.7:9090"));
  EXPECT_EQ(t.Next(), "198.18.0.7:9090");
  t.Failed();
  EXPECT_EQ(t.Next(), "svc:9090");
}

TEST(AggregatorTargets, GarbageRedirectIgnored) {
  AggregatorTargets t({"a:1", "b:2"});
  EXPECT_EQ(t.Next(), "a:1");
  EXPECT_FALSE(t.Redirect("evil host:1\nx=y"));
  EXPECT_FALSE(t.redirect_pending());
  EXPECT_EQ(t.Next(), "b:2");  // counted as a failure of a:1
  EXPECT_FALSE(t.Redirect(std::string(300, 'a') + ":1"));
  EXPECT_EQ(t.Next(), "a:1");
}

}  // namespace
}  // namespace pc::agent
