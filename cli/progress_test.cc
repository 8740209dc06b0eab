#include "cli/progress.h"

#include "gtest/gtest.h"

namespace pc::cli {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(HumanClock, MinutesAndHours) {
  EXPECT_EQ(HumanClock(absl::Seconds(7)), "0:07");
  EXPECT_EQ(HumanClock(absl::Seconds(754)), "12:34");
  EXPECT_EQ(HumanClock(absl::Seconds(3723)), "1:02:03");
  EXPECT_EQ(HumanClock(absl::Seconds(-3)), "0:00");
}

TEST(RenderProgress, KnownSizeShowsBarPercentRateAndEta) {
  // 1 MiB of 4 MiB in 2 s: 512 KiB/s, 3 MiB left: 6 s.
  EXPECT_EQ(RenderProgress(kMiB, 4 * kMiB, absl::Seconds(2), 80),
            "[=========>                          ]  25% 1.0 MiB/4.0 MiB "
            "512.0 KiB/s ETA 0:06");  // exactly 80 columns
}

TEST(RenderProgress, DoneShowsTheTimeItTook) {
  EXPECT_EQ(RenderProgress(4 * kMiB, 4 * kMiB, absl::Seconds(3), 60),
            "[===================] 100% 4.0 MiB/4.0 MiB 1.3 MiB/s in 0:03");
}

TEST(RenderProgress, MoreThanTheTotalStaysAtOneHundredPercent) {
  std::string line = RenderProgress(5 * kMiB, 4 * kMiB, absl::Seconds(1), 80);
  EXPECT_NE(line.find(" 100% 5.0 MiB/4.0 MiB"), std::string::npos) << line;
}

TEST(RenderProgress, UnknownSizeShowsBytesRateAndElapsed) {
  EXPECT_EQ(RenderProgress(3 * kMiB, 0, absl::Seconds(65), 80),
            "3.0 MiB 47.3 KiB/s 1:05");
}

TEST(RenderProgress, NoTimeYetHasNoRate) {
  EXPECT_EQ(RenderProgress(0, 1000, absl::ZeroDuration(), 60),
            "[>                            ]   0% 0 B/1000 B -/s ETA -:--");
}

TEST(RenderProgress, FitsTheWidth) {
  for (int width : {0, 5, 20, 40, 50, 80, 200}) {
    std::string line = RenderProgress(kMiB, 4 * kMiB, absl::Seconds(2), width);
    if (width >= 60) {
      EXPECT_LE(line.size(), static_cast<size_t>(width)) << line;
    }
    if (width < 20) {
      EXPECT_LE(line.size(), static_cast<size_t>(width)) << line;
    }
  }
  // Narrow: the numbers without a bar.
  std::string narrow = RenderProgress(kMiB, 4 * kMiB, absl::Seconds(2), 45);
  EXPECT_EQ(narrow.find('['), std::string::npos) << narrow;
}

}  // namespace
}  // namespace pc::cli
