#include "node_agent/config.h"

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

TEST(AgentConfig, ParsesEveryKeyOverDefaults) {
  auto c = ParseAgentConfig(R"(
node_name: node-a
capture_dir: /var/lib/captures
listen: 0.0.0.0:9091
max_files: 20
max_captures: 4
max_bytes: 50000000
netns_dirs: [/run/netns]
scan_proc: true
allow_host_network: true
snaplen: 1600
immediate_mode: true
stop_grace_seconds: 1.5
aggregator: capture-aggregator.kube-system:9090
aggregator_token_file: /var/run/secrets/tokens/agg
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_name, "node-a");
  EXPECT_EQ(c->max_files, 20);
  EXPECT_EQ(c->netns_dirs, std::vector<std::string>{"/run/netns"});
  EXPECT_TRUE(c->scan_proc);
  EXPECT_EQ(c->snaplen, 1600);
  EXPECT_DOUBLE_EQ(c->stop_grace_seconds, 1.5);
  EXPECT_EQ(c->tcpdump_binary, "/usr/bin/tcpdump");  // default kept
  EXPECT_EQ(c->aggregator_token_file, "/var/run/secrets/tokens/agg");
  EXPECT_TRUE(ValidateAgentConfig(*c).ok());
  c->aggregator = "198.18.0.1:9090, capture-aggregator.kube-system.svc:9090";
  EXPECT_TRUE(ValidateAgentConfig(*c).ok()) << ValidateAgentConfig(*c);
  for (const char* bad : {"198.18.0.1:9090,", "a:1,b", "host:0", "a b:1",
                          "198.18.0.1:9090,x:99999"}) {
    c->aggregator = bad;
    EXPECT_NE(ValidateAgentConfig(*c).message().find("aggregator"),
              absl::string_view::npos)
        << bad;
  }
  c->aggregator = "198.18.0.1:9090";
  c->aggregator_token_file = "token";
  EXPECT_NE(ValidateAgentConfig(*c).message().find("aggregator_token_file"),
            absl::string_view::npos);
}

TEST(AgentConfig, EmptyFileGivesDefaults) {
  auto c = ParseAgentConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->listen, "127.0.0.1:9091");
}

TEST(AgentConfig, TyposAndWrongTypesAreClearErrors) {
  auto typo = ParseAgentConfig("max_file: 3\n");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("unknown config key \"max_file\""),
            absl::string_view::npos);
  auto wrong = ParseAgentConfig("max_files: lots\n");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("max_files"),
            absl::string_view::npos);
  EXPECT_FALSE(ParseAgentConfig("[1, 2]").ok());
  EXPECT_FALSE(ParseAgentConfig("a: [").ok());
}

TEST(AgentConfig, ValidationNamesTheKey) {
  AgentConfig c;
  EXPECT_NE(ValidateAgentConfig(c).message().find("node_name"),
            absl::string_view::npos);
  c.node_name = "node-a";
  EXPECT_TRUE(ValidateAgentConfig(c).ok());
  c.capture_dir = "relative";
  EXPECT_NE(ValidateAgentConfig(c).message().find("capture_dir"),
            absl::string_view::npos);
  c.capture_dir = "/c";
  c.listen = "9091";
  EXPECT_NE(ValidateAgentConfig(c).message().find("listen"),
            absl::string_view::npos);
  c.listen = "127.0.0.1:9091";
  c.node_name = "Node_A";
  EXPECT_FALSE(ValidateAgentConfig(c).ok());
}

}  // namespace
}  // namespace pc::agent
