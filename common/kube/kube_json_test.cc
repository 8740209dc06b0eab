#include "common/kube/kube_json.h"

#include <string>

#include "common/kube/kube_types.pb.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

TEST(KubeJsonTest, ParsesKubernetesNamesAndIgnoresUnknownFields) {
  Pod pod;
  ASSERT_TRUE(ParseJson(R"({
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1",
                 "resourceVersion": "42", "labels": {"app": "web"},
                 "annotations": {"a/b": "c"}, "ownerReferences": [{"kind": "StatefulSet"}],
                 "creationTimestamp": "2024-01-01T00:00:00Z", "deletionTimestamp": null},
    "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "c"}]},
    "status": {"phase": "Running", "podIP": "10.1.0.5",
               "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
               "conditions": [{"type": "Ready", "status": "True"}]}
  })",
                        &pod)
                  .ok());
  EXPECT_EQ(pod.metadata().name(), "web-0");
  EXPECT_EQ(pod.metadata().namespace_(), "shop");
  EXPECT_EQ(pod.metadata().resource_version(), "42");
  EXPECT_EQ(pod.metadata().annotations().at("a/b"), "c");
  EXPECT_EQ(pod.metadata().deletion_timestamp(), "");
  EXPECT_EQ(pod.spec().node_name(), "n1");
  EXPECT_TRUE(pod.spec().host_network());
  EXPECT_EQ(pod.status().pod_ip(), "10.1.0.5");
  ASSERT_EQ(pod.status().pod_ips_size(), 2);
  EXPECT_EQ(pod.status().pod_ips(1).ip(), "fd00::5");
}

TEST(KubeJsonTest, MalformedIsInvalidArgument) {
  Pod pod;
  for (const char* json : {"", "{", "[]", "{\"metadata\": 5}",
                           "{\"spec\": {\"hostNetwork\": \"x\"}}", "nul",
                           "{\"metadata\": {\"name\": \"a\"}} trailing"}) {
    absl::Status status = ParseJson(json, &pod);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << json;
  }
}

TEST(KubeJsonTest, DeepNestingInUnknownFieldsDoesNotCrash) {
  std::string deep =
      "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  Pod pod;
  (void)ParseJson(deep, &pod);  // error or not, but no stack overflow
  std::string deep_objects;
  for (int i = 0; i < 50000; ++i) deep_objects += "{\"a\":";
  deep_objects += "1" + std::string(50000, '}');
  (void)ParseJson(deep_objects, &pod);
}

TEST(KubeJsonTest, ToJsonUsesJsonNamesAndEscapes) {
  PodStatus status;
  status.set_pod_ip("10.0.0.1");
  status.add_pod_ips()->set_ip("10.0.0.1");
  status.set_phase("a\"b\nc\\");
  absl::StatusOr<std::string> json = ToJson(status);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_NE(json->find("\"podIP\":\"10.0.0.1\""), std::string::npos) << *json;
  EXPECT_NE(json->find("\"podIPs\":[{\"ip\":\"10.0.0.1\"}]"), std::string::npos)
      << *json;
  EXPECT_NE(json->find(R"("phase":"a\"b\nc\\")"), std::string::npos) << *json;
}

TEST(KubeJsonTest, SanitizeUtf8) {
  EXPECT_EQ(SanitizeUtf8("hello", 3), "hel");
  EXPECT_EQ(SanitizeUtf8("h\xc3\xa9llo", 2), "h");  // never half of é
  EXPECT_EQ(SanitizeUtf8("h\xc3\xa9llo", 3), "h\xc3\xa9");
  EXPECT_EQ(SanitizeUtf8("a\xff"
                         "b",
                         10),
            "a?b");
  EXPECT_EQ(SanitizeUtf8("\xc0\xaf", 10), "??");       // overlong '/'
  EXPECT_EQ(SanitizeUtf8("\xed\xa0\x80", 10), "???");  // surrogate
  EXPECT_EQ(SanitizeUtf8("\xf0\x9f\x98\x80!", 10), "\xf0\x9f\x98\x80!");
  EXPECT_EQ(SanitizeUtf8("\xe2\x82", 10), "??");  // truncated sequence
}

}  // namespace
}  // namespace kube
}  // namespace pc
