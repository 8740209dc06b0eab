#include "common/capture_layout.h"

#include "gtest/gtest.h"

namespace pc {
namespace {

TEST(RunDirName, RoundTripsAndRejectsLookalikes) {
  EXPECT_EQ(RunDirName(3, 5), "run-3-w5");
  int run, n;
  ASSERT_TRUE(ParseRunDirName("run-12-w100", &run, &n));
  EXPECT_EQ(run, 12);
  EXPECT_EQ(n, 100);
  for (const char* bad : {"run-0-w5", "run-1-w0", "run-01-w5", "run-1-w5x",
                          "run-1", "run--1-w5", "../run-1-w5", "run-1-w5/.."}) {
    EXPECT_FALSE(ParseRunDirName(bad, &run, &n)) << bad;
  }
}

TEST(CaptureId, ValidIdsAreSafeDirectoryNames) {
  const std::string id =
      MakeCaptureId("default", "web-1.example",
                    "0a1b2c3d-0000-4000-8000-00000000abcd", 1764342877123);
  EXPECT_EQ(id, "default_web-1.example_0a1b2c3d_1764342877123");
  EXPECT_TRUE(IsValidCaptureId(id));
  for (const char* bad :
       {"", "..", "a_b_0a1b2c3d", "a/b_c_0a1b2c3d_1", "a_b_0A1B2C3D_1",
        "a_b_0a1b2c3d_x", "a_b_0a1b2c3d_1_2", "A_b_0a1b2c3d_1",
        "a_b_0a1b2c3d_0"}) {
    EXPECT_FALSE(IsValidCaptureId(bad)) << bad;
  }
}

}  // namespace
}  // namespace pc
