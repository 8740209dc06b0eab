#include "common/label_selector.h"

#include <string>

#include "gtest/gtest.h"

namespace pc {
namespace {

LabelSelector::Labels L(
    std::initializer_list<std::pair<std::string, std::string>> kv) {
  LabelSelector::Labels labels;
  for (const auto& [k, v] : kv) labels[k] = v;
  return labels;
}

bool Match(const std::string& selector, const LabelSelector::Labels& labels) {
  auto s = LabelSelector::Parse(selector);
  EXPECT_TRUE(s.ok()) << selector << ": " << s.status();
  return s.ok() && s->Matches(labels);
}

TEST(LabelSelectorTest, EmptyMatchesEverything) {
  EXPECT_TRUE(Match("", L({})));
  EXPECT_TRUE(Match("  ", L({{"app", "web"}})));
  EXPECT_TRUE(LabelSelector::Parse("")->empty());
}

TEST(LabelSelectorTest, Equality) {
  const auto web = L({{"app", "web"}, {"tier", "front"}});
  EXPECT_TRUE(Match("app=web", web));
  EXPECT_TRUE(Match("app==web", web));
  EXPECT_TRUE(Match("app = web", web));
  EXPECT_FALSE(Match("app=api", web));
  EXPECT_FALSE(Match("app=web", L({})));
  EXPECT_TRUE(Match("app!=api", web));
  EXPECT_FALSE(Match("app!=web", web));
  EXPECT_TRUE(Match("app!=web", L({})));  // as Kubernetes: missing passes
  EXPECT_TRUE(Match("app=web,tier=front", web));
  EXPECT_FALSE(Match("app=web,tier=back", web));
  EXPECT_TRUE(Match("empty=", L({{"empty", ""}})));
}

TEST(LabelSelectorTest, SetsAndExistence) {
  const auto web = L({{"app", "web"}, {"example.com/team", "net"}});
  EXPECT_TRUE(Match("app in (web,api)", web));
  EXPECT_TRUE(Match("app in ( api , web )", web));
  EXPECT_TRUE(Match("app in(web)", web));
  EXPECT_FALSE(Match("app in (api)", web));
  EXPECT_FALSE(Match("missing in (web)", web));
  EXPECT_TRUE(Match("app notin (api,db)", web));
  EXPECT_FALSE(Match("app notin (web)", web));
  EXPECT_TRUE(Match("missing notin (web)", web));
  EXPECT_TRUE(Match("app", web));
  EXPECT_FALSE(Match("canary", web));
  EXPECT_TRUE(Match("!canary", web));
  EXPECT_FALSE(Match("!app", web));
  EXPECT_TRUE(Match("example.com/team=net,app in (web),!canary", web));
  // A key that merely starts with "in" is a key.
  EXPECT_TRUE(Match("index", L({{"index", "1"}})));
}

TEST(LabelSelectorTest, InvalidSelectorsSayWhy) {
  for (const char* bad :
       {"app=web,", ",app", "app=we b", "app in web", "app in (web",
        "app in ((web))", "app=-web", "App Name=x", "app>1", "app<1",
        "Example.com/team=x", "app~web", "=web", "!", "a/b/c=x"}) {
    auto s = LabelSelector::Parse(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.status().message().find("label_selector"), std::string::npos)
        << s.status();
  }
  auto s = LabelSelector::Parse("app>1");
  EXPECT_NE(s.status().message().find("not supported"), std::string::npos)
      << s.status();
  EXPECT_TRUE(LabelSelector::Parse(std::string(63, 'a') + "=x").ok());
  EXPECT_FALSE(LabelSelector::Parse(std::string(64, 'a') + "=x").ok());
  EXPECT_FALSE(LabelSelector::Parse("app=" + std::string(64, 'v')).ok());
}

}  // namespace
}  // namespace pc
