#include "node_agent/tcpdump_command.h"

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

TEST(BuildTcpdumpArgv, RingOfOneMegabyteFilesWithoutAShell) {
  TcpdumpOptions options;
  options.interface = "eth0";
  options.output_base = "/captures/default_web-1_0a1b2c3d_1/run-1/ring";
  options.max_files = 5;
  auto argv = BuildTcpdumpArgv(options);
  ASSERT_TRUE(argv.ok()) << argv.status();
  std::vector<std::string> expected = {
      "/usr/bin/tcpdump",
      "-i",
      "eth0",
      "-Z",
      "root",
      "-U",
      "-n",
      "-C",
      "1",
      "-W",
      "5",
      "-w",
      "/captures/default_web-1_0a1b2c3d_1/run-1/ring"};
  EXPECT_EQ(*argv, expected);
}

TEST(BuildTcpdumpArgv, OptionalTuning) {
  TcpdumpOptions options;
  options.interface = "eth0";
  options.output_base = "/c/ring";
  options.max_files = 2;
  options.snaplen = 1600;
  options.buffer_kib = 4096;
  options.immediate = true;
  auto argv = BuildTcpdumpArgv(options);
  ASSERT_TRUE(argv.ok());
  const std::string joined = [&] {
    std::string s;
    for (const auto& a : *argv) s += a + " ";
    return s;
  }();
  EXPECT_NE(joined.find("-s 1600 "), std::string::npos);
  EXPECT_NE(joined.find("-B 4096 "), std::string::npos);
  EXPECT_NE(joined.find("--immediate-mode "), std::string::npos);
  EXPECT_EQ(argv->back(), "/c/ring");
}

TEST(BuildTcpdumpArgv, RejectsInterfaceNamesThatLookLikeOptions) {
  TcpdumpOptions options;
  options.output_base = "/c/ring";
  options.max_files = 1;
  for (const char* bad :
       {"", "-w/etc/passwd", "eth0 -w x", "a/b", "averyveryverylongname"}) {
    options.interface = bad;
    EXPECT_FALSE(BuildTcpdumpArgv(options).ok()) << bad;
  }
  options.interface = "eth0";
  options.output_base = "relative/ring";
  EXPECT_FALSE(BuildTcpdumpArgv(options).ok());
}

TEST(BuildTcpdumpArgv, FilterIsOneArgumentAfterDoubleDash) {
  TcpdumpOptions options;
  options.interface = "eth0";
  options.output_base = "/c/ring";
  options.max_files = 2;
  options.packet_count = 100;
  options.filter = "-w /etc/passwd or tcp port 80; rm -rf /";
  auto argv = BuildTcpdumpArgv(options);
  ASSERT_TRUE(argv.ok()) << argv.status();
  ASSERT_GE(argv->size(), 4u);
  const size_t n = argv->size();
  EXPECT_EQ((*argv)[n - 2], "--");
  EXPECT_EQ((*argv)[n - 1], options.filter);
  EXPECT_EQ((*argv)[n - 4], "-w");
  EXPECT_EQ((*argv)[n - 3], "/c/ring");
  // -c before "--", once.
  int dash_c = 0;
  for (size_t i = 0; i + 2 < n; ++i) {
    if ((*argv)[i] == "-c") {
      ++dash_c;
      EXPECT_EQ((*argv)[i + 1], "100");
    }
  }
  EXPECT_EQ(dash_c, 1);
}

TEST(BuildTcpdumpArgv, NoFilterNoCountKeepsTodaysArgv) {
  TcpdumpOptions options;
  options.interface = "eth0";
  options.output_base = "/c/ring";
  options.max_files = 2;
  auto argv = BuildTcpdumpArgv(options);
  ASSERT_TRUE(argv.ok());
  for (const auto& a : *argv) {
    EXPECT_NE(a, "--");
    EXPECT_NE(a, "-c");
  }
  EXPECT_EQ(argv->back(), "/c/ring");
}

TEST(BuildTcpdumpArgv, RejectsNulInFilter) {
  TcpdumpOptions options;
  options.interface = "eth0";
  options.output_base = "/c/ring";
  options.max_files = 2;
  options.filter = std::string("tcp\0port 80", 12);
  EXPECT_FALSE(BuildTcpdumpArgv(options).ok());
}

}  // namespace
}  // namespace pc::agent
