#include "common/kube/names.h"

#include <string>

#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

TEST(NamesTest, Subdomain) {
  EXPECT_TRUE(IsDns1123Subdomain("node-1"));
  EXPECT_TRUE(IsDns1123Subdomain("ip-10-0-0-1.ec2.internal"));
  EXPECT_TRUE(IsDns1123Subdomain("a"));
  EXPECT_TRUE(IsDns1123Subdomain(std::string(253, 'a')));
  EXPECT_FALSE(IsDns1123Subdomain(std::string(254, 'a')));
  EXPECT_FALSE(IsDns1123Subdomain(""));
  EXPECT_FALSE(IsDns1123Subdomain("Node"));
  EXPECT_FALSE(IsDns1123Subdomain("-node"));
  EXPECT_FALSE(IsDns1123Subdomain("node-"));
  EXPECT_FALSE(IsDns1123Subdomain("a..b"));
  EXPECT_FALSE(IsDns1123Subdomain("a.-b"));
  EXPECT_FALSE(IsDns1123Subdomain("node&watch=1"));
  EXPECT_FALSE(IsDns1123Subdomain("node/../x"));
  EXPECT_FALSE(IsDns1123Subdomain(std::string("a\0b", 3)));
}

TEST(NamesTest, Label) {
  EXPECT_TRUE(IsDns1123Label("kube-system"));
  EXPECT_TRUE(IsDns1123Label(std::string(63, 'a')));
  EXPECT_FALSE(IsDns1123Label(std::string(64, 'a')));
  EXPECT_FALSE(IsDns1123Label("a.b"));
  EXPECT_FALSE(IsDns1123Label(""));
}

TEST(NamesTest, UrlEscape) {
  EXPECT_EQ(UrlEscape("spec.nodeName=node-1"), "spec.nodeName%3Dnode-1");
  EXPECT_EQ(UrlEscape("a b&c/d?e#f%"), "a%20b%26c%2Fd%3Fe%23f%25");
  EXPECT_EQ(UrlEscape("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(UrlEscape("\xff\n"), "%FF%0A");
}

}  // namespace
}  // namespace kube
}  // namespace pc
