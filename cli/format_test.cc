#include "cli/format.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace pc::cli {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;

TEST(HumanBytes, Units) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(uint64_t{3} << 20), "3.0 MiB");
  EXPECT_EQ(HumanBytes(uint64_t{5} << 30), "5.0 GiB");
}

TEST(HumanAge, Steps) {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  EXPECT_EQ(HumanAge(now - absl::Seconds(45), now), "45s");
  EXPECT_EQ(HumanAge(now - absl::Minutes(12), now), "12m");
  EXPECT_EQ(HumanAge(now - absl::Hours(3), now), "3h");
  EXPECT_EQ(HumanAge(now - absl::Hours(72), now), "3d");
  EXPECT_EQ(HumanAge(now + absl::Seconds(5), now), "-");
  EXPECT_EQ(HumanAge(absl::UnixEpoch(), now), "-");
}

TEST(Printable, EscapesControlBytesAndTruncates) {
  EXPECT_EQ(Printable("web-1", 10), "web-1");
  EXPECT_EQ(Printable("a\nb\x1b[2J", 20), "a\\x0ab\\x1b[2J");
  EXPECT_EQ(Printable("abcdef", 3), "abc...");
}

TEST(FormatCaptureTable, AlignedColumnsOneRowPerCapture) {
  Capture a;
  a.set_id("web_w1_0a1b2c3d_1");
  a.set_node("node-a");
  a.set_namespace_("web");
  a.set_pod("w1");
  a.set_state(Capture::RUNNING);
  a.set_max_files(5);
  a.add_files();
  a.add_files();
  a.set_bytes(2 << 20);
  a.set_packets(1234);
  a.mutable_start_time()->set_seconds(1000);
  Capture b = a;
  b.set_id("db_d1_99999999_2");
  b.set_node("node-b");
  b.set_pod("d1\n");
  b.set_state(Capture::STOPPED);
  b.set_on_node(false);
  b.mutable_expire_time()->set_seconds(9000);
  b.set_bytes_lost(4096);
  std::string table = FormatCaptureTable({a, b}, absl::FromUnixSeconds(1060));
  std::vector<std::string> lines =
      absl::StrSplit(table, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << table;
  EXPECT_EQ(lines[0].find("ID"), 0u);
  // Every column starts at the same offset in every row.
  size_t node_col = lines[0].find("NODE");
  EXPECT_EQ(lines[1].find("node-a"), node_col);
  EXPECT_EQ(lines[2].find("node-b"), node_col);
  size_t state_col = lines[0].find("STATE");
  EXPECT_EQ(lines[1].find("RUNNING"), state_col);
  EXPECT_EQ(lines[2].find("STOPPED*"),
            state_col);  // only the aggregator has it
  EXPECT_NE(lines[1].find("2/5"), std::string::npos);
  EXPECT_NE(lines[1].find("2.0 MiB"), std::string::npos);
  EXPECT_NE(lines[1].find("1234"), std::string::npos);
  EXPECT_NE(lines[1].find("60s"), std::string::npos);
  EXPECT_NE(lines[2].find("web/d1\\x0a"), std::string::npos);  // no forged line
  EXPECT_NE(lines[2].find("4.0 KiB lost before upload"), std::string::npos);
}

TEST(FormatCaptureTable, WideAddsIpStopReasonAndOptions) {
  Capture a;
  a.set_id("web_w1_0a1b2c3d_1");
  a.set_namespace_("web");
  a.set_pod("w1");
  a.set_pod_ip("198.18.0.5");
  a.set_state(Capture::STOPPED);
  a.set_stop_reason(packetcapture::v1::DURATION_REACHED);
  a.mutable_options()->set_filter("tcp port 80");
  a.mutable_options()->set_snaplen(96);
  a.mutable_options()->mutable_duration()->set_seconds(90);
  a.mutable_options()->set_max_packets(1000);
  std::string table = FormatCaptureTable({a}, absl::FromUnixSeconds(1060),
                                         /*wide=*/true);
  std::vector<std::string> lines =
      absl::StrSplit(table, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << table;
  EXPECT_NE(lines[0].find("POD-IP"), std::string::npos);
  EXPECT_NE(lines[0].find("OPTIONS"), std::string::npos);
  EXPECT_EQ(lines[1].find("198.18.0.5"), lines[0].find("POD-IP"));
  EXPECT_EQ(lines[1].find("DURATION_REACHED"), lines[0].find("STOP-REASON"));
  EXPECT_NE(lines[1].find("filter=\"tcp port 80\" snaplen=96 duration=1m30s "
                          "max-packets=1000"),
            std::string::npos)
      << lines[1];
  EXPECT_EQ(FormatCaptureTable({a}, absl::Now()).find("OPTIONS"),
            std::string::npos);
}

TEST(HumanAgo, SaysAgo) {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  EXPECT_EQ(HumanAgo(now - absl::Minutes(5), now), "5m ago");
  EXPECT_EQ(HumanAgo(absl::UnixEpoch(), now), "-");
}

TEST(FormatCaptureTable, HeaderOnlyWhenEmpty) {
  std::string table = FormatCaptureTable({}, absl::Now());
  EXPECT_EQ(table.rfind("ID", 0), 0u);
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 1);
}

TEST(FormatEvent, OneLine) {
  CaptureEvent event;
  event.set_type(CaptureEvent::MODIFIED);
  event.mutable_capture()->set_id("x_y_1_2");
  event.mutable_capture()->set_node("node-a");
  event.mutable_capture()->set_namespace_("x");
  event.mutable_capture()->set_pod("y");
  event.mutable_capture()->set_state(Capture::RUNNING);
  event.mutable_capture()->set_packets(7);
  std::string line = FormatEvent(event);
  EXPECT_NE(line.find("MODIFIED x_y_1_2 node-a x/y RUNNING 7 packets"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
  CaptureEvent synced;
  synced.set_type(CaptureEvent::SYNCED);
  EXPECT_NE(FormatEvent(synced).find("SYNCED"), std::string::npos);
}

}  // namespace
}  // namespace pc::cli
