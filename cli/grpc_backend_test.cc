#include "cli/grpc_backend.h"

#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace pc::cli {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;

Capture Make(const std::string& id, Capture::State state) {
  Capture c;
  c.set_id(id);
  c.set_namespace_("demo");
  c.set_pod("web-1");
  c.set_state(state);
  return c;
}

// Watch: one existing capture, SYNCED, a DELETED one (skipped), then the
// new one RUNNING. Download of "live" sends two messages then waits for the
// client to leave; DownloadCaptures is left unimplemented.
class FakeService final : public packetcapture::v1::CaptureService::Service {
 public:
  grpc::Status WatchCaptures(
      grpc::ServerContext* context,
      const packetcapture::v1::WatchCapturesRequest* request,
      grpc::ServerWriter<CaptureEvent>* writer) override {
    watched_namespace = request->namespace_();
    CaptureEvent e;
    e.set_type(CaptureEvent::ADDED);
    *e.mutable_capture() = Make("old", Capture::STOPPED);
    writer->Write(e);
    e.Clear();
    e.set_type(CaptureEvent::SYNCED);
    writer->Write(e);
    e.set_type(CaptureEvent::DELETED);
    *e.mutable_capture() = Make("gone", Capture::STOPPED);
    writer->Write(e);
    e.set_type(CaptureEvent::ADDED);
    *e.mutable_capture() = Make("new", Capture::RUNNING);
    writer->Write(e);
    while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
    return grpc::Status::CANCELLED;
  }
  grpc::Status DownloadCapture(
      grpc::ServerContext* context,
      const packetcapture::v1::DownloadCaptureRequest* request,
      grpc::ServerWriter<packetcapture::v1::DownloadCaptureResponse>* writer)
      override {
    if (!request->follow()) return grpc::Status(grpc::INVALID_ARGUMENT, "no");
    if (request->id() != "live" && request->id() != "ends") {
      return grpc::Status(grpc::NOT_FOUND, "no capture");
    }
    packetcapture::v1::DownloadCaptureResponse m;
    m.set_data("abc");
    writer->Write(m);
    m.set_data("def");
    writer->Write(m);
    if (request->id() == "ends") return grpc::Status::OK;
    streaming.Notify();
    while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
    return grpc::Status::CANCELLED;
  }
  std::string watched_namespace;
  absl::Notification streaming;
};

class GrpcBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    address_ = "127.0.0.1:" + std::to_string(port);
    stub_ = packetcapture::v1::CaptureService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    backend_ = std::make_unique<GrpcCaptureBackend>(*stub_, address_, "");
  }
  void TearDown() override {
    backend_.reset();
    server_->Shutdown();
  }

  FakeService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<packetcapture::v1::CaptureService::Stub> stub_;
  std::unique_ptr<GrpcCaptureBackend> backend_;
};

TEST_F(GrpcBackendTest, WatchGivesTheExistingThenTheChanges) {
  auto existing = backend_->StartWatch("demo", absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(existing.ok()) << existing.status();
  ASSERT_EQ(existing->size(), 1u);
  EXPECT_EQ((*existing)[0].id(), "old");
  EXPECT_EQ(service_.watched_namespace, "demo");
  auto next = backend_->NextChange();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->id(), "new");
  backend_->StopWatch();
}

TEST_F(GrpcBackendTest, WatchDeadline) {
  ASSERT_TRUE(
      backend_->StartWatch("demo", absl::Now() + absl::Seconds(1)).ok());
  ASSERT_TRUE(backend_->NextChange().ok());
  EXPECT_EQ(backend_->NextChange().status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(GrpcBackendTest, StreamWritesUntilTheServerEnds) {
  std::string out;
  absl::Status status = backend_->Stream({"ends"}, [&](absl::string_view d) {
    out.append(d.data(), d.size());
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(out, "abcdef");
}

TEST_F(GrpcBackendTest, CancelEndsAFollow) {
  std::string out;
  absl::Notification received;  // both messages, on the client
  std::thread canceller([this, &received] {
    service_.streaming.WaitForNotification();
    received.WaitForNotification();
    backend_->Cancel();
  });
  absl::Status status = backend_->Stream({"live"}, [&](absl::string_view d) {
    out.append(d.data(), d.size());
    if (out.size() == 6) received.Notify();
    return absl::OkStatus();
  });
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(out, "abcdef");
  // Once cancelled, nothing new starts.
  EXPECT_EQ(backend_->StartWatch("demo", absl::Now()).status().code(),
            absl::StatusCode::kCancelled);
}

TEST_F(GrpcBackendTest, ErrorsKeepTheCodeAndSayTheServer) {
  absl::Status status = backend_->Stream(
      {"a", "b"}, [](absl::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(absl::StartsWith(status.message(), address_ + ": UNIMPLEMENTED"))
      << status;
  status = backend_->Stream({"nope"},
                            [](absl::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
}

TEST(GrpcBackend, UnreachableServerSaysWhatToDo) {
  auto stub = packetcapture::v1::CaptureService::NewStub(
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  GrpcCaptureBackend backend(*stub, "127.0.0.1:1", "");
  absl::Status status =
      backend.StartWatch("demo", absl::Now() + absl::Seconds(5)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(status.message(),
                                "cannot reach the capture server at "
                                "127.0.0.1:1"))
      << status;
}

}  // namespace
}  // namespace pc::cli
