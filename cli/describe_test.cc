#include "cli/describe.h"

#include "gtest/gtest.h"

namespace pc::cli {
namespace {

using packetcapture::v1::Capture;

Capture Sample() {
  Capture c;
  c.set_id("demo_web-1_0a1b2c3d_1700000000000");
  c.set_node("node-a");
  c.set_namespace_("demo");
  c.set_pod("web-1");
  c.set_pod_ip("198.18.0.5");
  c.set_state(Capture::STOPPED);
  c.set_stop_reason(packetcapture::v1::MAX_PACKETS_REACHED);
  c.set_annotation("5");
  c.set_max_files(5);
  c.set_bytes(3 * 1024 * 1024 / 2);
  c.set_packets(58);
  c.mutable_options()->set_filter("udp port 53");
  c.mutable_options()->set_max_packets(58);
  c.mutable_start_time()->set_seconds(1'000'000 - 300);
  c.mutable_stop_time()->set_seconds(1'000'000 - 45);
  (*c.mutable_pod_labels())["app"] = "web";
  auto* f = c.add_files();
  f->set_name("ring0");
  f->set_size(1536 * 1024);
  f->set_packets(58);
  f->mutable_last_packet_time()->set_seconds(1'000'000 - 50);
  return c;
}

TEST(FormatDescribe, HumanSizesAgesOptionsAndStopReason) {
  std::string text = FormatDescribe(Sample(), absl::FromUnixSeconds(1'000'000));
  for (const char* want : {
           "ID:         demo_web-1_0a1b2c3d_1700000000000\n",
           "Pod:        demo/web-1\n",
           "State:      STOPPED (MAX_PACKETS_REACHED)\n",
           "Options:    filter=\"udp port 53\" max-packets=58\n",
           "(5m ago)\n",   // started
           "(45s ago)\n",  // stopped
           "Size:       1.5 MiB in 1 of 5 files, 58 packets\n",
           "Labels:     app=web\n",
           "  ring0         1.5 MiB        58  50s ago\n",
       }) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
}

TEST(FormatDescribe, NoOptionsIsADash) {
  Capture c;
  c.set_id("x");
  std::string text = FormatDescribe(c, absl::Now());
  EXPECT_NE(text.find("Options:    -\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Started:    -\n"), std::string::npos) << text;
}

TEST(CapturesToJson, ProtoJsonMappingWithFieldNames) {
  auto json = CapturesToJson({Sample()});
  ASSERT_TRUE(json.ok());
  EXPECT_NE(json->find("\"captures\": ["), std::string::npos) << *json;
  EXPECT_NE(json->find("\"pod_ip\": \"198.18.0.5\""), std::string::npos);
  EXPECT_NE(json->find("\"packets\": \"58\""), std::string::npos);  // uint64
  EXPECT_NE(json->find("\"stop_reason\": \"MAX_PACKETS_REACHED\""),
            std::string::npos);
  EXPECT_EQ(*CapturesToJson({}), "{\n \"captures\": []\n}\n");
}

TEST(CapturesToYaml, SameDataAsYaml) {
  auto yaml = CapturesToYaml({Sample()});
  ASSERT_TRUE(yaml.ok());
  EXPECT_EQ(yaml->rfind("\"captures\":\n  -\n", 0), 0u) << *yaml;
  EXPECT_NE(yaml->find("    \"pod_ip\": \"198.18.0.5\"\n"), std::string::npos)
      << *yaml;
  EXPECT_NE(yaml->find("    \"options\":\n      \"filter\": \"udp port 53\"\n"),
            std::string::npos)
      << *yaml;
  EXPECT_NE(yaml->find("    \"pod_labels\":\n      \"app\": \"web\"\n"),
            std::string::npos)
      << *yaml;
  EXPECT_EQ(*CapturesToYaml({}), "\"captures\": []\n");
}

TEST(JsonToYaml, ScalarsAndEscapes) {
  EXPECT_EQ(*JsonToYaml(R"({"a": 1, "b": true, "c": null, "d": "x\"y\n"})"),
            "\"a\": 1\n\"b\": true\n\"c\": null\n\"d\": \"x\\\"y\\x0a\"\n");
  EXPECT_EQ(*JsonToYaml("[1, [2], {}]"), "- 1\n-\n  - 2\n- {}\n");
  EXPECT_FALSE(JsonToYaml("{").ok());
}

}  // namespace
}  // namespace pc::cli
