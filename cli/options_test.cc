#include "cli/options.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
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

// The messages a person reads: as clear as the hand-written parser's were.
TEST(ParseOptions, ErrorsSayWhatIsWrong) {
  auto message = [](std::vector<std::string> args) {
    return std::string(Parse(args).status().message());
  };
  EXPECT_EQ(message({}), "no command given");
  EXPECT_EQ(message({"lsit"}), "unknown command \"lsit\"");
  EXPECT_EQ(message({"get"}), "expected exactly one capture ID");
  EXPECT_EQ(message({"get", "a", "b"}), "expected exactly one capture ID");
  EXPECT_EQ(message({"list", "extra"}), "unexpected argument \"extra\"");
  EXPECT_EQ(message({"list", "--node"}), "--node needs a value");
  EXPECT_EQ(message({"list", "--server="}), "--server must not be empty");
  EXPECT_EQ(message({"list", "--state=sleeping"}),
            "unknown --state \"sleeping\" (PENDING, RUNNING, STOPPED or "
            "FAILED)");
  EXPECT_EQ(message({"get", "a", "--node=n"}),
            "--node does not go with get (capturectl get --help lists its "
            "flags)");
  EXPECT_EQ(message({"list", "-o", "x"}),
            "unknown output format \"x\" for list (wide, json or yaml)");
  EXPECT_EQ(message({"capture", "-n", "demo"}),
            "give one POD or -l SELECTOR (e.g. -l app=web)");
  EXPECT_EQ(message({"capture", "web-1", "--duration", "soon"}),
            "--duration \"soon\" is not a positive duration (90s, 10m)");
}

TEST(ParseOptions, ListOutputFormats) {
  EXPECT_EQ(Parse({"list"})->format, OutputFormat::kTable);
  EXPECT_EQ(Parse({"list", "-o", "wide"})->format, OutputFormat::kWide);
  EXPECT_EQ(Parse({"list", "--output=json"})->format, OutputFormat::kJson);
  EXPECT_EQ(Parse({"list", "--output", "yaml"})->format, OutputFormat::kYaml);
}

TEST(ParseOptions, DescribeAndDownloadFlags) {
  auto o = Parse({"describe", "id1"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kDescribe);
  EXPECT_EQ(o->id, "id1");
  o = Parse({"download", "id1", "--quiet", "--format", "pcapng"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->quiet);
  EXPECT_EQ(o->download_format, packetcapture::v1::FORMAT_PCAPNG);
  EXPECT_EQ(o->output, "id1.pcapng");
  EXPECT_FALSE(Parse({"download", "id1", "--format", "snoop"}).ok());
  EXPECT_FALSE(Parse({"follow", "id1", "--quiet"}).ok());
}

TEST(ParseOptions, CaptureOnePod) {
  auto o = Parse({"capture", "-n", "demo", "web-1", "--files", "3", "--filter",
                  "tcp port 80", "--snaplen", "96", "--duration", "5s",
                  "--max-packets", "1000", "-w", "out.pcap", "--kubeconfig",
                  "/tmp/kc"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kCapture);
  EXPECT_EQ(o->namespace_, "demo");
  EXPECT_EQ(o->pod, "web-1");
  EXPECT_EQ(o->files, 3u);
  EXPECT_EQ(o->filter, "tcp port 80");
  EXPECT_EQ(o->snaplen, 96u);
  EXPECT_EQ(o->duration, absl::Seconds(5));
  EXPECT_EQ(o->duration_text, "5s");
  EXPECT_EQ(o->max_packets, 1000u);
  EXPECT_EQ(o->output, "out.pcap");
  EXPECT_EQ(o->kubeconfig, "/tmp/kc");
  EXPECT_FALSE(o->force);
  // Defaults: namespace "default", 5 files, stdout.
  o = Parse({"capture", "web-1", "--follow"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->namespace_, "default");
  EXPECT_EQ(o->files, 5u);
  EXPECT_EQ(o->output, "-");
  EXPECT_EQ(o->duration, absl::ZeroDuration());
}

TEST(ParseOptions, CaptureBySelector) {
  auto o = Parse({"capture", "-n", "demo", "-l", "app=web", "--force"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->label_selector, "app=web");
  EXPECT_EQ(o->pod, "");
  EXPECT_TRUE(o->force);
}

TEST(ParseOptions, CaptureRefusesWhatItCannotMean) {
  const std::vector<std::vector<std::string>> bad = {
      {"capture"},                              // no pod, no selector
      {"capture", "a", "b"},                    // two pods
      {"capture", "a", "-l", "app=web"},        // both
      {"capture", "a", "-w", "x", "--follow"},  // file and stdout
      {"capture", "a", "--files", "0"},         //
      {"capture", "a", "--files", "abc"},       //
      {"capture", "a", "--duration", "-5s"},    //
      {"capture", "a", "--snaplen", "0"},       //
      {"capture", "a", "--max-packets", "0"},   //
      {"capture", "a", "--filter="},            //
      {"capture", "a", "-w", ""},               //
      {"capture", "a", "--state", "RUNNING"},   // list's flag
  };
  for (const auto& args : bad) {
    auto o = Parse(args);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument)
        << absl::StrJoin(args, " ");
  }
}

TEST(ParseOptions, Completion) {
  auto o = Parse({"completion", "bash"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kCompletion);
  EXPECT_FALSE(Parse({"completion"}).ok());
  EXPECT_FALSE(Parse({"completion", "fish"}).ok());
}

TEST(ParseOptions, CommandHelpListsItsFlags) {
  auto o = Parse({"capture", "--help"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kHelp);
  EXPECT_NE(o->help_text.find("--max-packets"), std::string::npos)
      << o->help_text;
  EXPECT_EQ(Parse({"help"})->help_text, kUsage);
}

TEST(CommandTable, EveryCommandWithItsFlags) {
  bool saw_capture = false;
  for (const CommandFlags& c : CommandTable()) {
    if (c.name == "") {
      EXPECT_NE(std::find(c.flags.begin(), c.flags.end(), "--server"),
                c.flags.end());
    }
    if (c.name == "capture") {
      saw_capture = true;
      EXPECT_NE(std::find(c.flags.begin(), c.flags.end(), "--duration"),
                c.flags.end());
      EXPECT_NE(std::find(c.flags.begin(), c.flags.end(), "-w"), c.flags.end());
      EXPECT_EQ(c.positional, "POD");
    }
  }
  EXPECT_TRUE(saw_capture);
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
