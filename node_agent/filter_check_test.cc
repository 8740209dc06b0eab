#include "node_agent/filter_check.h"

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

TEST(CheckPcapFilter, AcceptsWhatTcpdumpAccepts) {
  for (const char* ok : {"tcp port 443 or udp port 53", "icmp", "udp",
                         "host 198.18.0.1 and not port 22", "vlan and tcp",
                         "tcp[tcpflags] & tcp-syn != 0"}) {
    EXPECT_TRUE(CheckPcapFilter(ok, 0).ok()) << ok;
  }
  EXPECT_TRUE(CheckPcapFilter("tcp", 96).ok());
}

TEST(CheckPcapFilter, RefusesWithLibpcapsMessage) {
  auto bad = CheckPcapFilter("tcp prot 80", 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("tcpdump.antrea.io/filter"), std::string::npos);
  // libpcap's own words ("syntax error" for this one).
  EXPECT_NE(bad.message().find("syntax error"), std::string::npos) << bad;
  EXPECT_FALSE(CheckPcapFilter("-w /tmp/x", 0).ok());
  EXPECT_FALSE(CheckPcapFilter("port 99999", 0).ok());
  EXPECT_FALSE(CheckPcapFilter("host nosuchhost.invalid.", 0).ok());
}

TEST(FilterChecker, RemembersResults) {
  FilterChecker checker;
  EXPECT_TRUE(checker.Check("icmp", 0).ok());
  EXPECT_TRUE(checker.Check("icmp", 0).ok());
  EXPECT_FALSE(checker.Check("icmp or", 0).ok());
  EXPECT_FALSE(checker.Check("icmp or", 0).ok());
}

}  // namespace
}  // namespace pc::agent
