#include "common/pcap/pcapng_writer.h"

#include <string>

#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"
#include "common/pcap/pcapng_test_util.h"
#include "gtest/gtest.h"

namespace pc::pcapng {
namespace {

using testutil::ParsePcapng;

TEST(PcapngWriterTest, BlocksRoundTrip) {
  std::string out;
  SectionHeader shb;
  shb.comment = "cluster prod, 2026-12-02T03:00:00Z to 2026-12-02T03:05:00Z";
  shb.userappl = "capture-aggregator";
  shb.os = "Linux";
  AppendSectionHeader(shb, &out);
  InterfaceDescription idb;
  idb.linktype = 1;
  idb.snaplen = 262144;
  idb.precision = pcap::TimestampPrecision::kNano;
  idb.name = "demo/web-1";
  idb.description = "node node-a, pod IP 198.18.0.5, capture c1";
  idb.filter = "tcp port 443";
  AppendInterfaceDescription(idb, &out);
  AppendEnhancedPacket(0, 1700000000123456789ull, "abcde", 1500, &out);
  AppendEnhancedPacket(0, 1700000000123456790ull, "", 60, &out);
  ASSERT_EQ(out.size() % 4, 0u);

  auto parsed = ParsePcapng(out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->section[1].at(0), shb.comment);
  EXPECT_EQ(parsed->section[3].at(0), "Linux");
  EXPECT_EQ(parsed->section[4].at(0), "capture-aggregator");
  EXPECT_EQ(parsed->section.count(2), 0u);  // empty hardware: left out
  ASSERT_EQ(parsed->interfaces.size(), 1u);
  const auto& i = parsed->interfaces[0];
  EXPECT_EQ(i.linktype, 1);
  EXPECT_EQ(i.snaplen, 262144u);
  EXPECT_EQ(i.options.at(2).at(0), "demo/web-1");
  EXPECT_EQ(i.options.at(3).at(0), idb.description);
  EXPECT_EQ(i.options.at(9).at(0), std::string(1, '\x09'));
  EXPECT_EQ(i.options.at(11).at(0), std::string(1, '\0') + "tcp port 443");
  ASSERT_EQ(parsed->packets.size(), 2u);
  EXPECT_EQ(parsed->packets[0].timestamp, 1700000000123456789ull);
  EXPECT_EQ(parsed->packets[0].data, "abcde");
  EXPECT_EQ(parsed->packets[0].orig_len, 1500u);
  EXPECT_EQ(parsed->packets[1].data, "");
}

TEST(PcapngWriterTest, SectionWithoutOptionsHasNoEndOfOptions) {
  std::string out;
  AppendSectionHeader(SectionHeader{}, &out);
  EXPECT_EQ(out.size(), 28u);
  EXPECT_TRUE(ParsePcapng(out).ok());
}

TEST(PcapngWriterTest, EnhancedPacketSizeMatches) {
  for (uint32_t caplen : {0u, 1u, 3u, 4u, 5u, 1514u}) {
    std::string out;
    AppendEnhancedPacket(3, 7, std::string(caplen, 'x'), caplen, &out);
    EXPECT_EQ(out.size(), EnhancedPacketSize(caplen)) << caplen;
  }
}

TEST(PcapngWriterTest, InterfaceFollowsThePcapHeader) {
  pcap::GlobalHeader h;
  h.linktype = 0x0400'0071;  // FCS bits above Linux cooked (113)
  h.snaplen = 96;
  h.precision = pcap::TimestampPrecision::kNano;
  const InterfaceDescription idb = InterfaceFor(h);
  EXPECT_EQ(idb.linktype, 113);
  EXPECT_EQ(idb.snaplen, 96u);
  EXPECT_EQ(idb.precision, pcap::TimestampPrecision::kNano);
  pcap::RecordHeader r;
  r.ts_sec = 2;
  r.ts_frac = 5;
  EXPECT_EQ(PcapngTimestamp(r, pcap::TimestampPrecision::kNano), 2000000005u);
  EXPECT_EQ(PcapngTimestamp(r, pcap::TimestampPrecision::kMicro), 2000005u);
}

// Wireshark's own reader accepts what we write, with our metadata.
TEST(PcapngWriterTest, TsharkReadsIt) {
  constexpr char kTshark[] = "/usr/bin/tshark";
  if (access(kTshark, X_OK) != 0) GTEST_SKIP() << "no " << kTshark;
  std::string out;
  SectionHeader shb;
  shb.comment = "cluster test";
  AppendSectionHeader(shb, &out);
  InterfaceDescription idb;
  idb.snaplen = 262144;
  idb.name = "demo/web-1";
  idb.description = "node node-a";
  AppendInterfaceDescription(idb, &out);
  for (uint32_t seq = 0; seq < 5; ++seq) {
    AppendEnhancedPacket(0, 1700000000000000ull + seq * 1000,
                         pcap::testutil::MakePacket(seq, 61), 61, &out);
  }
  const std::string path = pcap::testutil::MakeTempDir() + "/one.pcapng";
  pcap::testutil::WriteFile(path, out);
  std::string text;
  const int status = testutil::RunTool(
      {kTshark, "-r", path, "-T", "fields", "-e", "frame.interface_name", "-e",
       "frame.time_epoch", "-e", "udp.dstport"},
      &text);
  ASSERT_EQ(status, 0) << text;
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "demo/web-1\t1700000000.000000000\t9");
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5);
}

}  // namespace
}  // namespace pc::pcapng
