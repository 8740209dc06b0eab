#include "cli/pod_annotator.h"

#include "absl/strings/match.h"
#include "common/kube/fake_api_server.h"
#include "gtest/gtest.h"

namespace pc::cli {
namespace {

using kube::FakeApiServer;
using kube::FakeRequest;
using kube::FakeResponse;

TEST(AnnotatePatch, SetsTheCountAndOptionsAndRemovesOptionsNotGiven) {
  CaptureSpec spec;
  spec.files = 3;
  spec.filter = "tcp port 80 and host \"x\"";
  spec.duration = "5s";
  EXPECT_EQ(AnnotatePatch(spec, "42"),
            R"({"metadata":{"annotations":{"tcpdump.antrea.io":"3",)"
            R"("tcpdump.antrea.io/duration":"5s",)"
            R"("tcpdump.antrea.io/filter":"tcp port 80 and host \"x\"",)"
            R"("tcpdump.antrea.io/max-packets":null,)"
            R"("tcpdump.antrea.io/snaplen":null},"resourceVersion":"42"}})");
}

TEST(RemovePatch, NullsEveryKey) {
  std::string patch = RemovePatch();
  for (const char* key :
       {"\"tcpdump.antrea.io\":null", "\"tcpdump.antrea.io/filter\":null",
        "\"tcpdump.antrea.io/snaplen\":null",
        "\"tcpdump.antrea.io/duration\":null",
        "\"tcpdump.antrea.io/max-packets\":null"}) {
    EXPECT_TRUE(absl::StrContains(patch, key)) << key << " " << patch;
  }
  EXPECT_FALSE(absl::StrContains(patch, "resourceVersion"));
}

TEST(CheckNotAnnotated, RefusesSomeonesCaptureUnlessForced) {
  kube::Pod pod;
  pod.mutable_metadata()->set_namespace_("demo");
  pod.mutable_metadata()->set_name("web-1");
  EXPECT_TRUE(CheckNotAnnotated(pod, false).ok());
  (*pod.mutable_metadata()->mutable_annotations())["tcpdump.antrea.io"] = "5";
  absl::Status refused = CheckNotAnnotated(pod, false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(
      refused.message(), "pod demo/web-1 already has tcpdump.antrea.io=\"5\""))
      << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "--force")) << refused;
  EXPECT_TRUE(CheckNotAnnotated(pod, true).ok());
}

TEST(ManualRemoveCommand, EveryKey) {
  EXPECT_EQ(ManualRemoveCommand("demo", "web-1"),
            "kubectl annotate pod -n demo web-1 tcpdump.antrea.io- "
            "tcpdump.antrea.io/filter- tcpdump.antrea.io/snaplen- "
            "tcpdump.antrea.io/duration- tcpdump.antrea.io/max-packets-");
}

TEST(PodAnnotator, PatchesListsAndRemoves) {
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    if (request.method == "GET" &&
        absl::StartsWith(request.target, "/api/v1/namespaces/demo/pods?")) {
      if (!absl::StrContains(request.target, "continue=")) {
        response.body =
            R"({"metadata":{"continue":"t 2"},"items":[{"metadata":)"
            R"({"name":"web-1","namespace":"demo"}}]})";
      } else {
        response.body = R"({"metadata":{},"items":[{"metadata":)"
                        R"({"name":"web-2","namespace":"demo"}}]})";
      }
    } else if (request.method == "PATCH" &&
               request.target == "/api/v1/namespaces/demo/pods/gone") {
      response.status = 404;
      response.body = R"({"kind":"Status","code":404,"reason":"NotFound"})";
    } else if (request.method == "PATCH" &&
               request.target == "/api/v1/namespaces/demo/pods/changed") {
      response.status = 409;
      response.body = R"({"kind":"Status","code":409,"reason":"Conflict",)"
                      R"("message":"the object has been modified"})";
    } else {
      response.body = "{}";
    }
    return response;
  });
  ASSERT_TRUE(server.ok());
  kube::KubeConfig config;
  config.server = (*server)->url();
  auto client = kube::HttpClient::Create(config);
  ASSERT_TRUE(client.ok());
  PodAnnotator pods(**client);

  auto listed = pods.List("demo", "app in (web,api),tier!=db");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].metadata().name(), "web-2");
  auto requests = (*server)->requests();
  EXPECT_EQ(requests[0].target,
            "/api/v1/namespaces/demo/pods?limit=500&labelSelector="
            "app%20in%20%28web%2Capi%29%2Ctier%21%3Ddb");
  EXPECT_TRUE(absl::EndsWith(requests[1].target, "&continue=t%202"))
      << requests[1].target;

  kube::Pod pod = (*listed)[0];
  pod.mutable_metadata()->set_resource_version("7");
  CaptureSpec spec;
  ASSERT_TRUE(pods.Annotate(pod, spec).ok());
  FakeRequest patch = (*server)->requests().back();
  EXPECT_EQ(patch.method, "PATCH");
  EXPECT_EQ(patch.target, "/api/v1/namespaces/demo/pods/web-1");
  EXPECT_EQ(patch.headers["content-type"], "application/merge-patch+json");
  EXPECT_EQ(patch.body, AnnotatePatch(spec, "7"));

  EXPECT_TRUE(pods.Remove("demo", "web-1").ok());
  EXPECT_EQ((*server)->requests().back().body, RemovePatch());
  EXPECT_TRUE(pods.Remove("demo", "gone").ok());  // nothing left to remove
  pod.mutable_metadata()->set_name("changed");
  absl::Status conflict = pods.Annotate(pod, spec);
  EXPECT_EQ(kube::HttpCodeFromStatus(conflict), 409) << conflict;
  EXPECT_EQ(pods.Remove("demo", "../x").code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pc::cli
