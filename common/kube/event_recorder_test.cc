#include "common/kube/event_recorder.h"

#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/kube/fake_api_server.h"
#include "common/kube/kube_json.h"
#include "common/kube/kube_types.pb.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

const PodRef kPod{"shop", "web-0", "1234-abcd"};
const EventReporter kReporter{"packet-capture-agent", "node-1", ""};
// 2024-05-01T10:00:00Z plus 123456789 ns.
const absl::Time kNow =
    absl::FromUnixSeconds(1714557600) + absl::Nanoseconds(123456789);

Event Decode(const std::string& json) {
  Event event;
  absl::Status status = ParseJson(json, &event);
  EXPECT_TRUE(status.ok()) << status << "\n" << json;
  return event;
}

TEST(BuildEventJsonTest, Fields) {
  absl::StatusOr<std::string> json =
      BuildEventJson(kPod, EventLevel::kNormal, "CaptureStarted",
                     "capture c-1 started", kReporter, kNow);
  ASSERT_TRUE(json.ok()) << json.status();
  Event event = Decode(*json);
  EXPECT_EQ(event.api_version(), "v1");
  EXPECT_EQ(event.kind(), "Event");
  EXPECT_EQ(event.metadata().name(),
            absl::StrCat("web-0.", absl::Hex(absl::ToUnixNanos(kNow))));
  EXPECT_EQ(event.metadata().namespace_(), "shop");
  EXPECT_EQ(event.involved_object().api_version(), "v1");
  EXPECT_EQ(event.involved_object().kind(), "Pod");
  EXPECT_EQ(event.involved_object().namespace_(), "shop");
  EXPECT_EQ(event.involved_object().name(), "web-0");
  EXPECT_EQ(event.involved_object().uid(), "1234-abcd");
  EXPECT_EQ(event.reason(), "CaptureStarted");
  EXPECT_EQ(event.message(), "capture c-1 started");
  EXPECT_EQ(event.type(), "Normal");
  EXPECT_EQ(event.source().component(), "packet-capture-agent");
  EXPECT_EQ(event.source().host(), "node-1");
  EXPECT_EQ(event.first_timestamp(), "2024-05-01T10:00:00Z");
  EXPECT_EQ(event.last_timestamp(), "2024-05-01T10:00:00Z");
  EXPECT_EQ(event.count(), 1);
  EXPECT_EQ(event.reporting_component(), "packet-capture-agent");
  EXPECT_EQ(event.reporting_instance(), "packet-capture-agent-node-1");
  // Kubernetes' own JSON names, not proto names.
  EXPECT_TRUE(absl::StrContains(*json, "\"involvedObject\":{")) << *json;
  EXPECT_TRUE(absl::StrContains(*json, "\"firstTimestamp\":")) << *json;
  EXPECT_TRUE(absl::StrContains(*json, "\"reportingInstance\":")) << *json;
}

TEST(BuildEventJsonTest, MessageIsEscapedAndTruncated) {
  const std::string nasty =
      "say \"hi\"\nthen\\ \t}{\"injected\":true, \x01 </script>";
  absl::StatusOr<std::string> json = BuildEventJson(
      kPod, EventLevel::kWarning, "CaptureFailed", nasty, kReporter, kNow);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_FALSE(absl::StrContains(*json, "\n")) << *json;  // newline escaped
  EXPECT_TRUE(
      absl::StrContains(*json, R"(say \"hi\"\nthen\\ \t}{\"injected\":true)"))
      << *json;
  Event event = Decode(*json);
  EXPECT_EQ(event.message(), nasty);  // round-trips exactly
  EXPECT_EQ(event.type(), "Warning");

  std::string long_message =
      std::string(1023, 'x') + "\xc3\xa9" + std::string(100, 'y');
  json = BuildEventJson(kPod, EventLevel::kNormal, "R", long_message, kReporter,
                        kNow);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(Decode(*json).message(), std::string(1023, 'x'));  // not half an é

  json = BuildEventJson(kPod, EventLevel::kNormal, "R", "bad \xff utf8",
                        kReporter, kNow);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(Decode(*json).message(), "bad ? utf8");
}

TEST(BuildEventJsonTest, LongPodNameKeepsEventNameValid) {
  PodRef pod{"ns", std::string(240, 'p') + "-x", "u"};
  absl::StatusOr<std::string> json =
      BuildEventJson(pod, EventLevel::kNormal, "R", "m", kReporter, kNow);
  ASSERT_TRUE(json.ok()) << json.status();
  std::string name = Decode(*json).metadata().name();
  EXPECT_LE(name.size(), 253u);
  EXPECT_FALSE(absl::StrContains(name, "-.")) << name;
}

TEST(BuildEventJsonTest, RejectsBadInput) {
  EXPECT_FALSE(BuildEventJson({"Bad NS", "p", ""}, EventLevel::kNormal, "R",
                              "m", kReporter, kNow)
                   .ok());
  EXPECT_FALSE(BuildEventJson({"ns", "p/../x", ""}, EventLevel::kNormal, "R",
                              "m", kReporter, kNow)
                   .ok());
  EXPECT_FALSE(
      BuildEventJson(kPod, EventLevel::kNormal, "", "m", kReporter, kNow).ok());
  EXPECT_FALSE(BuildEventJson(kPod, EventLevel::kNormal, "Has Space", "m",
                              kReporter, kNow)
                   .ok());
  EXPECT_FALSE(BuildEventJson(kPod, EventLevel::kNormal, std::string(129, 'R'),
                              "m", kReporter, kNow)
                   .ok());
}

std::unique_ptr<HttpClient> ClientFor(const FakeApiServer& server) {
  KubeConfig config;
  config.server = server.url();
  auto client = HttpClient::Create(config);
  EXPECT_TRUE(client.ok()) << client.status();
  return *std::move(client);
}

TEST(EventRecorderTest, PostsAsynchronouslyAndDeduplicates) {
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    response.status =
        absl::StrContains(request.target, "/namespaces/forbidden/") ? 403 : 201;
    response.body = "{}";
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  EventRecorder::Options options;
  options.source = kReporter;
  auto recorder = EventRecorder::Create(client.get(), options);
  ASSERT_TRUE(recorder.ok()) << recorder.status();

  EXPECT_TRUE((*recorder)
                  ->Record(kPod, EventLevel::kNormal, "CaptureStarted", "c-1")
                  .ok());
  EXPECT_TRUE((*recorder)
                  ->Record(kPod, EventLevel::kNormal, "CaptureStarted", "c-1")
                  .ok());  // dup
  EXPECT_TRUE((*recorder)
                  ->Record(kPod, EventLevel::kNormal, "CaptureStopped", "c-1")
                  .ok());
  EXPECT_TRUE(
      (*recorder)
          ->Record({"forbidden", "p", "u2"}, EventLevel::kWarning, "X", "y")
          .ok());
  EXPECT_EQ((*recorder)
                ->Record({"bad ns", "p", ""}, EventLevel::kNormal, "X", "y")
                .code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*server)->WaitForRequests(3, absl::Seconds(20)));
  (*recorder)->Stop();
  EXPECT_EQ((*recorder)->Record(kPod, EventLevel::kNormal, "Late", "m").code(),
            absl::StatusCode::kFailedPrecondition);

  std::vector<FakeRequest> requests = (*server)->requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].target, "/api/v1/namespaces/shop/events");
  EXPECT_EQ(requests[0].headers["content-type"], "application/json");
  EXPECT_EQ(Decode(requests[0].body).reason(), "CaptureStarted");
  EXPECT_EQ(Decode(requests[1].body).reason(), "CaptureStopped");
  EXPECT_EQ(requests[2].target, "/api/v1/namespaces/forbidden/events");
  EventRecorder::Counters counters = (*recorder)->counters();
  EXPECT_EQ(counters.posted, 2u);
  EXPECT_EQ(counters.failed, 1u);
  EXPECT_EQ(counters.deduplicated, 1u);
  EXPECT_EQ(counters.dropped, 0u);
}

TEST(EventRecorderTest, FullQueueDropsInsteadOfBlocking) {
  absl::Notification release;
  auto server = FakeApiServer::Start([&](const FakeRequest&) {
    release.WaitForNotification();
    FakeResponse response;
    response.status = 201;
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  EventRecorder::Options options;
  options.source = kReporter;
  options.queue_capacity = 2;
  auto recorder = EventRecorder::Create(client.get(), options);
  ASSERT_TRUE(recorder.ok());
  // Unblocks the server even when an assertion below fails.
  absl::Cleanup unblock = [&] {
    if (!release.HasBeenNotified()) release.Notify();
  };

  ASSERT_TRUE(
      (*recorder)->Record(kPod, EventLevel::kNormal, "R", "in flight").ok());
  ASSERT_TRUE((*server)->WaitForRequests(
      1, absl::Seconds(20)));  // worker is stuck posting
  absl::Time start = absl::Now();
  EXPECT_TRUE(
      (*recorder)->Record(kPod, EventLevel::kNormal, "R", "queued 1").ok());
  EXPECT_TRUE(
      (*recorder)->Record(kPod, EventLevel::kNormal, "R", "queued 2").ok());
  EXPECT_EQ(
      (*recorder)->Record(kPod, EventLevel::kNormal, "R", "dropped").code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));  // never blocked
  release.Notify();
  (*recorder)->Stop();  // drains the two queued events
  EventRecorder::Counters counters = (*recorder)->counters();
  EXPECT_EQ(counters.posted, 3u);
  EXPECT_EQ(counters.dropped, 1u);
}

TEST(EventRecorderTest, StopGivesUpOnAHungServer) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.status = 201;
    response.hang = true;
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  EventRecorder::Options options;
  options.source = kReporter;
  options.drain_timeout = absl::Milliseconds(300);
  auto recorder = EventRecorder::Create(client.get(), options);
  ASSERT_TRUE(recorder.ok());
  ASSERT_TRUE((*recorder)->Record(kPod, EventLevel::kNormal, "R", "a").ok());
  ASSERT_TRUE((*recorder)->Record(kPod, EventLevel::kNormal, "R", "b").ok());
  ASSERT_TRUE((*server)->WaitForRequests(1, absl::Seconds(20)));
  absl::Time start = absl::Now();
  (*recorder)->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EventRecorder::Counters counters = (*recorder)->counters();
  EXPECT_EQ(counters.posted, 0u);
  EXPECT_EQ(counters.dropped, 2u);  // the aborted one and the queued one
}

}  // namespace
}  // namespace kube
}  // namespace pc
