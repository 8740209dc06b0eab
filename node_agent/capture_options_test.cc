#include "node_agent/capture_options.h"

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

using Annotations = std::map<std::string, std::string>;

TEST(ParseCaptureOptions, NoOptionsIsTodaysCapture) {
  auto parsed = ParseCaptureOptions({});
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
  EXPECT_EQ(DescribeOptions(*parsed), "no options");
  // Other annotations are not ours.
  parsed = ParseCaptureOptions(
      {{"tcpdump.antrea.io", "5"}, {"example.com/filter", "x"}});
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
}

TEST(ParseCaptureOptions, AllOptions) {
  auto parsed = ParseCaptureOptions({
      {"tcpdump.antrea.io/filter", "tcp port 443 or udp port 53"},
      {"tcpdump.antrea.io/snaplen", "96"},
      {"tcpdump.antrea.io/duration", "1h30m"},
      {"tcpdump.antrea.io/max-packets", "1000"},
  });
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->filter, "tcp port 443 or udp port 53");
  EXPECT_EQ(parsed->snaplen, 96);
  EXPECT_EQ(parsed->duration, absl::Minutes(90));
  EXPECT_EQ(parsed->max_packets, 1000u);
  EXPECT_EQ(DescribeOptions(*parsed),
            "filter \"tcp port 443 or udp port 53\", snaplen 96, "
            "duration 1h30m, max-packets 1000");
}

TEST(ParseCaptureOptions, BlankFilterIsNoFilter) {
  auto parsed = ParseCaptureOptions({{"tcpdump.antrea.io/filter", "  "}});
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
}

TEST(ParseCaptureOptions, RejectsBadValuesNamingTheAnnotation) {
  const std::vector<Annotations> bad = {
      {{"tcpdump.antrea.io/snaplen", "0"}},
      {{"tcpdump.antrea.io/snaplen", "13"}},
      {{"tcpdump.antrea.io/snaplen", "262145"}},
      {{"tcpdump.antrea.io/snaplen", "-1"}},
      {{"tcpdump.antrea.io/snaplen", "96 "}},
      {{"tcpdump.antrea.io/snaplen", "096"}},
      {{"tcpdump.antrea.io/max-packets", "0"}},
      {{"tcpdump.antrea.io/max-packets", "2147483648"}},
      {{"tcpdump.antrea.io/max-packets", "99999999999999999999"}},
      {{"tcpdump.antrea.io/max-packets", "1e3"}},
      {{"tcpdump.antrea.io/max-packets", ""}},
      {{"tcpdump.antrea.io/duration", ""}},
      {{"tcpdump.antrea.io/duration", "0"}},
      {{"tcpdump.antrea.io/duration", "0s"}},
      {{"tcpdump.antrea.io/duration", "500ms"}},
      {{"tcpdump.antrea.io/duration", "-10s"}},
      {{"tcpdump.antrea.io/duration", "+10s"}},
      {{"tcpdump.antrea.io/duration", "inf"}},
      {{"tcpdump.antrea.io/duration", "10"}},
      {{"tcpdump.antrea.io/duration", "10 s"}},
      {{"tcpdump.antrea.io/duration", "10d"}},
      {{"tcpdump.antrea.io/duration", "169h"}},
      {{"tcpdump.antrea.io/filter", std::string("tcp\0", 4)}},
      {{"tcpdump.antrea.io/filter", "tcp\x1b[31m"}},
      {{"tcpdump.antrea.io/filtr", "tcp"}},
  };
  for (const auto& annotations : bad) {
    auto parsed = ParseCaptureOptions(annotations);
    ASSERT_FALSE(parsed.ok())
        << annotations.begin()->first << "=" << annotations.begin()->second;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(annotations.begin()->first),
              absl::string_view::npos)
        << parsed.status();
  }
}

TEST(ParseCaptureOptions, FilterLengthIsBounded) {
  const std::string at_limit(kMaxFilterBytes, 'x');
  EXPECT_TRUE(ParseCaptureOptions({{kFilterAnnotation, at_limit}}).ok());
  auto over = ParseCaptureOptions({{kFilterAnnotation, at_limit + "x"}});
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("4096"), absl::string_view::npos);
  EXPECT_LT(over.status().message().size(), 200u);
}

TEST(ParseOptionDuration, GoSyntax) {
  EXPECT_EQ(*ParseOptionDuration("90s"), absl::Seconds(90));
  EXPECT_EQ(*ParseOptionDuration("10m"), absl::Minutes(10));
  EXPECT_EQ(*ParseOptionDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseOptionDuration("1.5h"), absl::Minutes(90));
  EXPECT_EQ(*ParseOptionDuration("1s"), absl::Seconds(1));
  EXPECT_EQ(*ParseOptionDuration("168h"), absl::Hours(168));
  EXPECT_EQ(*ParseOptionDuration("1500ms"), absl::Milliseconds(1500));
}

TEST(FormatOptionDuration, GoSpelling) {
  EXPECT_EQ(FormatOptionDuration(absl::Seconds(90)), "1m30s");
  EXPECT_EQ(FormatOptionDuration(absl::Minutes(90)), "1h30m");
  EXPECT_EQ(FormatOptionDuration(absl::Minutes(10)), "10m");
  EXPECT_EQ(FormatOptionDuration(absl::Seconds(5)), "5s");
  EXPECT_EQ(FormatOptionDuration(absl::Milliseconds(1500)), "1.5s");
  EXPECT_EQ(FormatOptionDuration(absl::Hours(168)), "168h");
  // What it prints parses back to the same value.
  for (absl::Duration d : {absl::Seconds(1), absl::Seconds(3661),
                           absl::Milliseconds(61001), absl::Hours(7)}) {
    EXPECT_EQ(*ParseOptionDuration(FormatOptionDuration(d)), d);
  }
}

TEST(OptionsProto, RoundTrip) {
  CaptureOptionsSpec o;
  o.filter = "udp";
  o.snaplen = 128;
  o.duration = absl::Milliseconds(90500);
  o.max_packets = 7;
  auto p = OptionsToProto(o);
  EXPECT_EQ(p.duration().seconds(), 90);
  EXPECT_EQ(p.duration().nanos(), 500000000);
  EXPECT_EQ(OptionsFromProto(p), o);
  EXPECT_FALSE(OptionsToProto({}).has_duration());
  EXPECT_TRUE(OptionsFromProto(OptionsToProto({})).empty());
}

}  // namespace
}  // namespace pc::agent
