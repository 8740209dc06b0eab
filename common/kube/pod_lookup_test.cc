#include "common/kube/pod_lookup.h"

#include "absl/strings/match.h"
#include "common/kube/fake_api_server.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

TEST(PodLookupTest, GetsThePodAndMapsErrors) {
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    if (request.target == "/api/v1/namespaces/kube-system/pods/agent-1") {
      response.body =
          R"({"kind":"Pod","apiVersion":"v1","metadata":{"name":"agent-1",)"
          R"("namespace":"kube-system","uid":"u-1"},"spec":{"nodeName":"n1",)"
          R"("containers":[{"name":"c"}]},"status":{"phase":"Running"}})";
    } else if (request.target == "/api/v1/namespaces/kube-system/pods/bad") {
      response.body = R"({"metadata":"not an object"})";
    } else {
      response.status = 404;
      response.body =
          R"({"kind":"Status","status":"Failure","reason":"NotFound",)"
          R"("message":"pods \"x\" not found","code":404})";
    }
    return response;
  });
  ASSERT_TRUE(server.ok());
  KubeConfig config;
  config.server = (*server)->url();
  auto client = HttpClient::Create(config);
  ASSERT_TRUE(client.ok());

  auto pod = GetPod(**client, "kube-system", "agent-1");
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->metadata().uid(), "u-1");
  EXPECT_EQ(pod->spec().node_name(), "n1");
  EXPECT_EQ((*server)->requests()[0].method, "GET");

  auto missing = GetPod(**client, "kube-system", "gone");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HttpCodeFromStatus(missing.status()), 404);
  EXPECT_EQ(GetPod(**client, "kube-system", "bad").status().code(),
            absl::StatusCode::kInvalidArgument);

  // Names that would change the path are refused before any request.
  const size_t sent = (*server)->requests().size();
  EXPECT_EQ(GetPod(**client, "kube-system", "../secrets/x").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetPod(**client, "Kube_System", "agent-1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*server)->requests().size(), sent);
}

}  // namespace
}  // namespace kube
}  // namespace pc
