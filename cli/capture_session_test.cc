#include "cli/capture_session.h"

#include <deque>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "common/kube/fake_api_server.h"
#include "gtest/gtest.h"

namespace pc::cli {
namespace {

using kube::FakeApiServer;
using kube::FakeRequest;
using kube::FakeResponse;
using packetcapture::v1::Capture;

Capture MakeCapture(const std::string& id, const std::string& pod,
                    Capture::State state, const std::string& message = "") {
  Capture c;
  c.set_id(id);
  c.set_namespace_("demo");
  c.set_pod(pod);
  c.set_node("node-a");
  c.set_state(state);
  c.set_message(message);
  return c;
}

// A CaptureService that plays a script.
class FakeBackend : public CaptureBackend {
 public:
  std::vector<Capture> existing;
  std::deque<Capture> changes;  // then the watch blocks until cancelled
  absl::Status start_status;
  // Stream: writes `data`, then returns `stream_status`, or with
  // `stream_blocks` waits for Cancel().
  std::string data = "pcap bytes";
  absl::Status stream_status;
  bool stream_blocks = false;
  std::vector<std::string> streamed_ids;

  absl::StatusOr<std::vector<Capture>> StartWatch(const std::string&,
                                                  absl::Time) override {
    if (!start_status.ok()) return start_status;
    return existing;
  }
  absl::StatusOr<Capture> NextChange() override {
    if (!changes.empty()) {
      Capture c = changes.front();
      changes.pop_front();
      return c;
    }
    WaitForCancel();
    return absl::CancelledError("cancelled");
  }
  void StopWatch() override {}
  absl::Status Stream(
      const std::vector<std::string>& ids,
      const std::function<absl::Status(absl::string_view)>& write) override {
    streamed_ids = ids;
    absl::Status written = write(data);
    if (!written.ok()) return written;
    if (stream_blocks) {
      WaitForCancel();
      return absl::CancelledError("cancelled");
    }
    return stream_status;
  }
  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

 private:
  void WaitForCancel() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&cancelled_));
  }
  absl::Mutex mu_;
  bool cancelled_ = false;
};

// A kube-apiserver with pods web-1 and web-2 (app=web) in demo; `annotated`
// pods carry tcpdump.antrea.io already.
class CaptureSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = FakeApiServer::Start([this](const FakeRequest& r) {
      FakeResponse response;
      auto pod = [this](const std::string& name) {
        std::string annotations =
            annotated_.count(name) ? R"("tcpdump.antrea.io":"2")" : "";
        return absl::StrCat(
            R"({"metadata":{"name":")", name,
            R"(","namespace":"demo","uid":"uid-)", name,
            R"(","resourceVersion":"5","annotations":{)", annotations,
            R"(}},"status":{"phase":"Running","podIP":"198.18.0.9"}})");
      };
      if (r.method == "GET" &&
          absl::StartsWith(r.target, "/api/v1/namespaces/demo/pods?")) {
        response.body = absl::StrCat(R"({"metadata":{},"items":[)",
                                     pod("web-1"), ",", pod("web-2"), "]}");
      } else if (r.method == "GET" &&
                 r.target == "/api/v1/namespaces/demo/pods/web-1") {
        response.body = pod("web-1");
      } else if (r.method == "GET") {
        response.status = 404;
        response.body =
            R"({"kind":"Status","code":404,"message":"pods \"x\" not found"})";
      } else {
        response.status = patch_status_;
        response.body = "{}";
      }
      return response;
    });
    ASSERT_TRUE(server.ok());
    server_ = *std::move(server);
    kube::KubeConfig config;
    config.server = server_->url();
    client_ = *kube::HttpClient::Create(config);
    pods_ = std::make_unique<PodAnnotator>(*client_);
    request_.ns = "demo";
    request_.pod = "web-1";
    request_.spec.files = 3;
    request_.wait_timeout = absl::Seconds(5);
  }

  absl::Status Run() {
    return RunCapture(
        request_, *pods_, backend_, interrupt_,
        [this](absl::string_view d) {
          output_.append(d.data(), d.size());
          return absl::OkStatus();
        },
        [this](const std::string& line) {
          absl::MutexLock lock(&log_mu_);
          log_ += line + "\n";
        });
  }

  // PATCH bodies sent, in order.
  std::vector<std::string> Patches(const std::string& pod) {
    std::vector<std::string> bodies;
    for (const FakeRequest& r : server_->requests()) {
      if (r.method == "PATCH" && absl::EndsWith(r.target, "/" + pod)) {
        bodies.push_back(r.body);
      }
    }
    return bodies;
  }

  std::set<std::string> annotated_;
  int patch_status_ = 200;
  std::unique_ptr<FakeApiServer> server_;
  std::unique_ptr<kube::HttpClient> client_;
  std::unique_ptr<PodAnnotator> pods_;
  FakeBackend backend_;
  Interrupt interrupt_;
  CaptureRequest request_;
  std::string output_;
  absl::Mutex log_mu_;
  std::string log_;
};

TEST_F(CaptureSessionTest, AnnotatesWaitsStreamsAndRemoves) {
  // An old stopped capture of the same pod is not ours.
  backend_.existing = {MakeCapture("old", "web-1", Capture::STOPPED)};
  backend_.changes = {MakeCapture("old", "web-1", Capture::RUNNING),
                      MakeCapture("new", "web-1", Capture::PENDING),
                      MakeCapture("other", "web-9", Capture::RUNNING),
                      MakeCapture("new", "web-1", Capture::RUNNING)};
  ASSERT_TRUE(Run().ok()) << log_;
  EXPECT_EQ(backend_.streamed_ids, std::vector<std::string>{"new"});
  EXPECT_EQ(output_, "pcap bytes");
  std::vector<std::string> patches = Patches("web-1");
  ASSERT_EQ(patches.size(), 2u);
  EXPECT_EQ(patches[0], AnnotatePatch(request_.spec, "5"));
  EXPECT_EQ(patches[1], RemovePatch());
}

TEST_F(CaptureSessionTest, FailedCaptureIsAnErrorWithItsMessageAndIsCleanedUp) {
  backend_.changes = {MakeCapture("new", "web-1", Capture::FAILED,
                                  "invalid filter: syntax error")};
  absl::Status status = Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(
      status.message(),
      "the capture of pod demo/web-1 FAILED: invalid filter: syntax error"))
      << status;
  EXPECT_EQ(Patches("web-1").back(), RemovePatch());
}

TEST_F(CaptureSessionTest, StreamErrorIsReturnedAfterTheCleanup) {
  backend_.changes = {MakeCapture("new", "web-1", Capture::RUNNING)};
  backend_.stream_status = absl::UnavailableError("connection reset");
  EXPECT_EQ(Run().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Patches("web-1").back(), RemovePatch());
}

TEST_F(CaptureSessionTest, TimeoutNamesThePodAndItsLastState) {
  request_.wait_timeout = absl::Milliseconds(200);
  backend_.changes = {
      MakeCapture("new", "web-1", Capture::PENDING, "waiting for the pod IP")};
  // The fake's watch does not end at the deadline by itself: a timer does.
  std::thread deadline([this] {
    absl::SleepFor(absl::Milliseconds(300));
    backend_.Cancel();
  });
  absl::Status status = Run();
  deadline.join();
  // Cancelled (the fake's way of ending) without an interrupt: returned as is.
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(Patches("web-1").back(), RemovePatch());
}

TEST_F(CaptureSessionTest, InterruptWhileStreamingRemovesTheAnnotation) {
  backend_.changes = {MakeCapture("new", "web-1", Capture::RUNNING)};
  backend_.stream_blocks = true;
  std::thread ctrl_c([this] {
    absl::SleepFor(absl::Milliseconds(200));
    interrupt_.Trigger();
  });
  EXPECT_TRUE(Run().ok()) << log_;
  ctrl_c.join();
  EXPECT_EQ(Patches("web-1").back(), RemovePatch());
  EXPECT_TRUE(absl::StrContains(log_, "interrupted")) << log_;
}

TEST_F(CaptureSessionTest, InterruptWhileWaitingRemovesTheAnnotation) {
  std::thread ctrl_c([this] {
    absl::SleepFor(absl::Milliseconds(200));
    interrupt_.Trigger();
  });
  EXPECT_EQ(Run().code(), absl::StatusCode::kCancelled);
  ctrl_c.join();
  EXPECT_EQ(Patches("web-1").size(), 2u);
  EXPECT_EQ(Patches("web-1").back(), RemovePatch());
}

TEST_F(CaptureSessionTest, DurationRemovesTheAnnotationThenEndsTheStream) {
  backend_.changes = {MakeCapture("new", "web-1", Capture::RUNNING)};
  backend_.stream_blocks = true;  // a server that ignores the duration option
  request_.duration = absl::Milliseconds(300);
  request_.grace = absl::Milliseconds(300);
  absl::Time start = absl::Now();
  EXPECT_TRUE(Run().ok()) << log_;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));
  EXPECT_TRUE(absl::StrContains(log_, "--duration reached")) << log_;
  EXPECT_EQ(Patches("web-1").size(), 2u);  // removed once
  EXPECT_EQ(Patches("web-1").back(), RemovePatch());
}

TEST_F(CaptureSessionTest, RefusesAnAnnotatedPodAndTouchesNothing) {
  annotated_ = {"web-1"};
  absl::Status status = Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(status.message(), "--force")) << status;
  EXPECT_TRUE(Patches("web-1").empty());
}

TEST_F(CaptureSessionTest, ForceTakesItOver) {
  annotated_ = {"web-1"};
  request_.force = true;
  backend_.existing = {MakeCapture("theirs", "web-1", Capture::RUNNING)};
  backend_.changes = {MakeCapture("theirs", "web-1", Capture::RUNNING)};
  ASSERT_TRUE(Run().ok()) << log_;
  EXPECT_EQ(backend_.streamed_ids, std::vector<std::string>{"theirs"});
  EXPECT_EQ(Patches("web-1").back(), RemovePatch());
}

TEST_F(CaptureSessionTest, AnnotateFailureStillCleansUp) {
  patch_status_ = 403;
  absl::Status status = Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_TRUE(
      absl::StrContains(status.message(), "cannot annotate pod demo/web-1"));
  // The removal was tried too (and failed: it says how to do it by hand).
  EXPECT_EQ(Patches("web-1").size(), 2u);
  EXPECT_TRUE(absl::StrContains(
      log_, "kubectl annotate pod -n demo web-1 tcpdump.antrea.io-"))
      << log_;
}

TEST_F(CaptureSessionTest, UnreachableServerTouchesNothing) {
  backend_.start_status =
      absl::UnavailableError("cannot reach the capture server");
  EXPECT_EQ(Run().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Patches("web-1").empty());
}

TEST_F(CaptureSessionTest, SelectorCapturesEveryPodMerged) {
  request_.pod = "";
  request_.label_selector = "app=web";
  backend_.changes = {MakeCapture("c2", "web-2", Capture::RUNNING),
                      MakeCapture("c1", "web-1", Capture::RUNNING)};
  ASSERT_TRUE(Run().ok()) << log_;
  EXPECT_EQ(backend_.streamed_ids, (std::vector<std::string>{"c1", "c2"}));
  for (const char* pod : {"web-1", "web-2"}) {
    ASSERT_EQ(Patches(pod).size(), 2u) << pod;
    EXPECT_EQ(Patches(pod).back(), RemovePatch()) << pod;
  }
}

TEST_F(CaptureSessionTest, SelectorRefusesIfAnyPodIsAnnotated) {
  request_.pod = "";
  request_.label_selector = "app=web";
  annotated_ = {"web-2"};
  EXPECT_EQ(Run().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Patches("web-1").empty());
  EXPECT_TRUE(Patches("web-2").empty());
}

TEST_F(CaptureSessionTest, MissingPod) {
  request_.pod = "nope";
  absl::Status status = Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StartsWith(status.message(), "pod demo/nope: ")) << status;
}

}  // namespace
}  // namespace pc::cli
