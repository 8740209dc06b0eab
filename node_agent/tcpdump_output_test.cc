#include "node_agent/tcpdump_output.h"

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

constexpr char kRealOutput[] =
    "tcpdump: listening on eth0, link-type EN10MB (Ethernet), snapshot length "
    "262144 bytes\n"
    "1187 packets captured\n"
    "1190 packets received by filter\n"
    "3 packets dropped by kernel\n";

TEST(TcpdumpOutput, ParsesBannerAndCountersSplitAnywhere) {
  const std::string text = kRealOutput;
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    TcpdumpOutput out;
    out.Feed(text.substr(0, cut));
    out.Feed(text.substr(cut));
    EXPECT_TRUE(out.listening());
    EXPECT_TRUE(out.has_counters());
    EXPECT_EQ(out.captured(), 1187u);
    EXPECT_EQ(out.received(), 1190u);
    EXPECT_EQ(out.dropped_by_kernel(), 3u);
  }
}

TEST(TcpdumpOutput, LaterCountersReplaceEarlierOnes) {
  TcpdumpOutput out;
  out.Feed(
      "1 packet captured\n1 packet received by filter\n"
      "0 packets dropped by kernel\n");
  EXPECT_EQ(out.captured(), 1u);
  out.Feed(
      "50 packets captured\n60 packets received by filter\n"
      "10 packets dropped by kernel\n");
  EXPECT_EQ(out.captured(), 50u);
  EXPECT_EQ(out.dropped_by_kernel(), 10u);
}

TEST(TcpdumpOutput, KeepsTheErrorLine) {
  TcpdumpOutput out;
  out.Feed(
      "tcpdump: eth9: No such device exists\n(SIOCGIFHWADDR: No such "
      "device)\n");
  EXPECT_FALSE(out.listening());
  EXPECT_EQ(out.last_message(), "(SIOCGIFHWADDR: No such device)");
}

TEST(TcpdumpOutput, OverlongLinesAreBounded) {
  TcpdumpOutput out;
  out.Feed(std::string(100000, 'x') + "\n");
  EXPECT_LE(out.last_message().size(), 1024u);
}

}  // namespace
}  // namespace pc::agent
