#include "cli/options.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pc::cli {
namespace {

using packetcapture::v1::Capture;

absl::StatusOr<Options> Parse(std::vector<std::string> args,
                              std::string env = "") {
  return ParseOptions(args, env);
}

TEST(ParseOptions, ListWithFiltersAndServer) {
  auto o = Parse({"--server=10.0.0.1:9090", "list", "--node", "node-a",
                  "--namespace=web", "--state=running"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kList);
  EXPECT_EQ(o->server, "10.0.0.1:9090");
  EXPECT_EQ(o->node, "node-a");
  EXPECT_EQ(o->namespace_, "web");
  EXPECT_EQ(o->state, Capture::RUNNING);
}

TEST(ParseOptions, ServerFromEnvironmentUnlessGiven) {
  EXPECT_EQ(Parse({"list"})->server, kDefaultServer);
  EXPECT_EQ(Parse({"list"}, "agg:9090")->server, "agg:9090");
  EXPECT_EQ(Parse({"list", "-s", "x:1"}, "agg:9090")->server, "x:1");
}

TEST(ParseOptions, DownloadDefaultsToIdDotPcap) {
  auto o = Parse({"download", "web_w1_1a2b3c4d_1700000000000"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->id, "web_w1_1a2b3c4d_1700000000000");
  EXPECT_EQ(o->output, "web_w1_1a2b3c4d_1700000000000.pcap");
  o = Parse({"download", "some-id", "-o", "/tmp/x.pcap"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->output, "/tmp/x.pcap");
  o = Parse({"download", "-o", "-", "some-id"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->output, "-");
  EXPECT_EQ(o->id, "some-id");
}

TEST(ParseOptions, DownloadOfAnIdThatIsNoFileNameNeedsOutput) {
  for (const char* id : {"../etc/passwd", "a/b", ".hidden", "x y"}) {
    auto o = Parse({"download", id});
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_TRUE(Parse({"download", id, "-o", "out.pcap"}).ok()) << id;
  }
}

TEST(ParseOptions, FollowDefaultsToStdout) {
  auto o = Parse({"follow", "id1"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->command, Command::kFollow);
  EXPECT_EQ(o->output, "-");
}

TEST(ParseOptions, Help) {
  EXPECT_EQ(Parse({"help"})->command, Command::kHelp);
  EXPECT_EQ(Parse({"list", "--help"})->command, Command::kHelp);
  EXPECT_EQ(Parse({"-h"})->command, Command::kHelp);
}

TEST(ParseOptions, RefusesWhatItCannotMean) {
  const std::vector<std::vector<std::string>> bad = {
      {},                            // no command
      {"lsit"},                      // unknown command
      {"get"},                       // no id
      {"get", "a", "b"},             // two ids
      {"list", "extra"},             // stray argument
      {"list", "--state=sleeping"},  // unknown state
      {"list", "--state=STATE_UNSPECIFIED"},
      {"watch", "--state=RUNNING"},  // state filter is list's
      {"get", "a", "--node=n"},      // filters are list's and watch's
      {"list", "-o", "x"},           // -o is download's and follow's
      {"list", "--node"},            // flag without a value
      {"list", "--server="},
      {"list", "--frobnicate=1"},
  };
  for (const auto& args : bad) {
    auto o = Parse(args);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument)
        << (args.empty() ? "(none)" : args[0]) << " " << args.size();
  }
}

TEST(IsPlainId, OnlyFileNameCharacters) {
  EXPECT_TRUE(IsPlainId("default_web-1_0a1b2c3d_1700000000000"));
  EXPECT_TRUE(IsPlainId("a.b"));
  EXPECT_FALSE(IsPlainId(""));
  EXPECT_FALSE(IsPlainId("."));
  EXPECT_FALSE(IsPlainId(".."));
  EXPECT_FALSE(IsPlainId("a/b"));
  EXPECT_FALSE(IsPlainId("a\nb"));
  EXPECT_FALSE(IsPlainId(std::string(201, 'a')));
}

TEST(ParseOptions, TokenOrTokenFileNotBoth) {
  auto o = Parse({"--token-file=/tmp/t", "list"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->token_file, "/tmp/t");
  EXPECT_EQ(o->token, "");
  o = Parse({"list", "--token", "abc.def"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->token, "abc.def");
  EXPECT_FALSE(Parse({"list", "--token=a", "--token-file=/tmp/t"}).ok());
  EXPECT_FALSE(Parse({"list", "--token="}).ok());
  EXPECT_FALSE(Parse({"list", "--token-file="}).ok());
  EXPECT_FALSE(Parse({"list", "--token"}).ok());  // needs a value
}

TEST(TokenFromFileContents, TrimsAndRefusesWhatIsNoToken) {
  EXPECT_EQ(*TokenFromFileContents("eyJhbGciOi.x.y\n"), "eyJhbGciOi.x.y");
  EXPECT_EQ(*TokenFromFileContents("  tok\r\n"), "tok");
  EXPECT_FALSE(TokenFromFileContents("").ok());
  EXPECT_FALSE(TokenFromFileContents(" \n").ok());
  EXPECT_FALSE(TokenFromFileContents("two words\n").ok());
  EXPECT_FALSE(TokenFromFileContents(std::string("a\0b", 3)).ok());
}

TEST(IsLoopbackServer, OnlyThisHost) {
  for (const char* local : {"127.0.0.1:9090", "localhost:9090", "LOCALHOST:1",
                            "[::1]:9090", "127.1.2.3:5", "unix:/run/x.sock",
                            "dns:///localhost:9090", "ipv4:127.0.0.1:9090"}) {
    EXPECT_TRUE(IsLoopbackServer(local)) << local;
  }
  for (const char* remote :
       {"10.0.0.1:9090", "capture-aggregator.kube-system.svc:9090",
        "[fe80::1]:9090", "128.0.0.1:1", "dns:///agg:9090", "198.18.0.1:9090",
        "localhost.example:9090"}) {
    EXPECT_FALSE(IsLoopbackServer(remote)) << remote;
  }
}

}  // namespace
}  // namespace pc::cli
