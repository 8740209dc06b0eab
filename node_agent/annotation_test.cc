#include "node_agent/annotation.h"

#include <limits>

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

TEST(ParseMaxFiles, AcceptsWholeNumbersInRange) {
  EXPECT_EQ(ParseMaxFiles("1", 100).value(), 1);
  EXPECT_EQ(ParseMaxFiles("5", 100).value(), 5);
  EXPECT_EQ(ParseMaxFiles("100", 100).value(), 100);
}

TEST(ParseMaxFiles, RejectsEverythingElseWithTheValueInTheMessage) {
  for (const char* bad : {"", "0", "-1", "+5", "5.0", "abc", " 5", "5 ", "007",
                          "0x10", "1e3", "101", "99999999999999999999"}) {
    auto parsed = ParseMaxFiles(bad, 100);
    ASSERT_FALSE(parsed.ok()) << "accepted \"" << bad << "\"";
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("tcpdump.antrea.io"),
              absl::string_view::npos);
    EXPECT_NE(parsed.status().message().find("from 1 to 100"),
              absl::string_view::npos)
        << parsed.status();
  }
}

// The digit-count check bounds the value by 10^digits(max_files), not by
// INT_MAX: with the largest max_files, ten nines must not wrap around.
TEST(ParseMaxFiles, LargestMaxFilesDoesNotOverflow) {
  constexpr int kMax = std::numeric_limits<int>::max();
  EXPECT_EQ(ParseMaxFiles("2147483647", kMax).value(), kMax);
  auto parsed = ParseMaxFiles("9999999999", kMax);
  ASSERT_FALSE(parsed.ok()) << "accepted as " << *parsed;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseMaxFiles, QuotesHostileValuesSafely) {
  auto parsed = ParseMaxFiles(
      std::string("5\n\"; rm -rf /\x01") + std::string(100, 'x'), 10);
  ASSERT_FALSE(parsed.ok());
  const std::string message(parsed.status().message());
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(message.find('\x01'), std::string::npos);
  EXPECT_LT(message.size(), 160u);
}

}  // namespace
}  // namespace pc::agent
