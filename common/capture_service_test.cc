#include "common/capture_service.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "common/capture_registry.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;
using packetcapture::v1::ListCapturesRequest;

Capture Make(const std::string& id, const std::string& node,
             const std::string& ns, int64_t start, Capture::State state) {
  Capture c;
  c.set_id(id);
  c.set_node(node);
  c.set_namespace_(ns);
  c.set_pod(id);
  c.set_state(state);
  c.mutable_start_time()->set_seconds(start);
  return c;
}

std::vector<Capture> Sample() {
  return {Make("a", "node-a", "web", 100, Capture::RUNNING),
          Make("b", "node-b", "web", 300, Capture::FAILED),
          Make("c", "node-a", "db", 200, Capture::RUNNING),
          Make("d", "node-a", "web", 300, Capture::STOPPED)};
}

std::vector<std::string> Ids(const packetcapture::v1::ListCapturesResponse& r) {
  std::vector<std::string> ids;
  for (const auto& c : r.captures()) ids.push_back(c.id());
  return ids;
}

TEST(ListPage, NewestFirstThenById) {
  auto page = CaptureServiceImpl::ListPage(Sample(), ListCapturesRequest());
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Ids(*page), (std::vector<std::string>{"b", "d", "c", "a"}));
  EXPECT_EQ(page->total_size(), 4);
  EXPECT_TRUE(page->next_page_token().empty());
}

TEST(ListPage, Filters) {
  ListCapturesRequest request;
  request.set_node("node-a");
  request.set_namespace_("web");
  auto page = CaptureServiceImpl::ListPage(Sample(), request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Ids(*page), (std::vector<std::string>{"d", "a"}));
  request.set_state(Capture::RUNNING);
  page = CaptureServiceImpl::ListPage(Sample(), request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Ids(*page), (std::vector<std::string>{"a"}));
}

TEST(ListPage, PagesWithTokensUntilTheEnd) {
  ListCapturesRequest request;
  request.set_page_size(3);
  std::vector<std::string> all;
  for (int pages = 0; pages < 5; ++pages) {
    auto page = CaptureServiceImpl::ListPage(Sample(), request);
    ASSERT_TRUE(page.ok());
    for (const auto& id : Ids(*page)) all.push_back(id);
    if (page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(all, (std::vector<std::string>{"b", "d", "c", "a"}));
}

TEST(ListPage, BadInputIsInvalidArgument) {
  ListCapturesRequest bad_token;
  bad_token.set_page_token("not a token");
  EXPECT_EQ(CaptureServiceImpl::ListPage(Sample(), bad_token).status().code(),
            absl::StatusCode::kInvalidArgument);
  ListCapturesRequest negative;
  negative.set_page_size(-1);
  EXPECT_EQ(CaptureServiceImpl::ListPage(Sample(), negative).status().code(),
            absl::StatusCode::kInvalidArgument);
  ListCapturesRequest state;
  state.set_state(static_cast<Capture::State>(42));
  EXPECT_EQ(CaptureServiceImpl::ListPage(Sample(), state).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CaptureRegistry, EventsForAddModifyDeleteAndInitialSync) {
  CaptureRegistry registry;
  registry.Put(Make("a", "node-a", "web", 1, Capture::PENDING));
  std::vector<std::string> seen;
  int handle = registry.Subscribe(
      [&](const CaptureEvent& e) {
        seen.push_back(CaptureEvent::Type_Name(e.type()) + ":" +
                       e.capture().id());
      },
      /*initial=*/true);
  registry.Put(Make("a", "node-a", "web", 1, Capture::PENDING));  // unchanged
  registry.Put(Make("a", "node-a", "web", 1, Capture::RUNNING));
  registry.ReplaceAll({Make("b", "node-a", "web", 2, Capture::RUNNING)});
  registry.Unsubscribe(handle);
  registry.Remove("b");
  EXPECT_EQ(seen, (std::vector<std::string>{"ADDED:a", "SYNCED:", "MODIFIED:a",
                                            "ADDED:b", "DELETED:a"}));
  EXPECT_FALSE(registry.Get("b").has_value());
}

// A CaptureService on a real loopback port, with the given peer filter.
class Served {
 public:
  explicit Served(PeerFilter allow_peer)
      : service_(&registry_, NoDownloads(), std::move(allow_peer)) {
    registry_.Put(Make("a", "node-a", "web", 100, Capture::RUNNING));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    stub_ = packetcapture::v1::CaptureService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                            grpc::InsecureChannelCredentials()));
  }
  ~Served() {
    if (server_ != nullptr) server_->Shutdown();
  }

  packetcapture::v1::CaptureService::Stub& stub() { return *stub_; }
  CaptureRegistry& registry() { return registry_; }
  // Shuts the server down, which waits until every call has finished; true
  // if that happened within `limit`. On false the server is abandoned.
  bool ShutdownWithin(std::chrono::seconds limit) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    std::thread([server = server_.get(), done] {
      server->Shutdown();
      done->set_value();
    }).detach();
    if (finished.wait_for(limit) != std::future_status::ready) return false;
    server_.reset();
    return true;
  }

 private:
  static PcapSourceOpener NoDownloads() {
    return [](const Capture&,
              bool) -> absl::StatusOr<std::unique_ptr<PcapSource>> {
      return absl::UnavailableError("no pcap in this test");
    };
  }

  CaptureRegistry registry_;
  CaptureServiceImpl service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<packetcapture::v1::CaptureService::Stub> stub_;
};

TEST(CaptureServicePeers, LoopbackCallerIsServedByDefault) {
  Served served(IsLoopbackPeer);
  grpc::ClientContext context;
  packetcapture::v1::ListCapturesResponse response;
  ASSERT_TRUE(served.stub()
                  .ListCaptures(&context, ListCapturesRequest(), &response)
                  .ok());
  EXPECT_EQ(response.captures_size(), 1);
}

TEST(CaptureServicePeers, RefusedPeerGetsPermissionDeniedOnEveryMethod) {
  std::vector<std::string> asked;
  Served served([&asked](absl::string_view peer) {
    asked.emplace_back(peer);
    return false;
  });
  auto denied = [](const grpc::Status& status) {
    return status.error_code() == grpc::StatusCode::PERMISSION_DENIED &&
           absl::StrContains(status.error_message(), "port-forward");
  };
  {
    grpc::ClientContext context;
    packetcapture::v1::ListCapturesResponse response;
    EXPECT_TRUE(denied(served.stub().ListCaptures(
        &context, ListCapturesRequest(), &response)));
    EXPECT_EQ(response.captures_size(), 0);
  }
  {
    grpc::ClientContext context;
    packetcapture::v1::GetCaptureRequest request;
    request.set_id("a");
    Capture response;
    EXPECT_TRUE(denied(served.stub().GetCapture(&context, request, &response)));
    EXPECT_TRUE(response.id().empty());
  }
  {
    grpc::ClientContext context;
    packetcapture::v1::DownloadCaptureRequest request;
    request.set_id("a");
    auto reader = served.stub().DownloadCapture(&context, request);
    packetcapture::v1::DownloadCaptureResponse chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    EXPECT_TRUE(denied(reader->Finish()));
  }
  {
    grpc::ClientContext context;
    auto reader = served.stub().WatchCaptures(
        &context, packetcapture::v1::WatchCapturesRequest());
    CaptureEvent event;
    EXPECT_FALSE(reader->Read(&event));  // not even the initial listing
    EXPECT_TRUE(denied(reader->Finish()));
  }
  ASSERT_EQ(asked.size(), 4u);
  EXPECT_TRUE(absl::StartsWith(asked[0], "ipv4:127.0.0.1:")) << asked[0];
}

// A watch cancelled while one of its events is being written must still
// finish: that write then completes normally, and nothing else is left to
// end the call. Until then such a call never ended, its registry
// subscription stayed, and Server::Shutdown() waited forever (found by
// aggregator_api_fuzz). Many initial events keep a write in flight when the
// cancel arrives.
TEST(CaptureServiceWatch, CancelledWatchFinishesWithAWriteInFlight) {
  Served served(IsLoopbackPeer);
  for (int i = 0; i < 2000; ++i) {
    served.registry().Put(Make("capture-" + std::to_string(i), "node-a", "web",
                               i, Capture::RUNNING));
  }
  for (int round = 0; round < 20; ++round) {
    grpc::ClientContext context;
    auto reader = served.stub().WatchCaptures(
        &context, packetcapture::v1::WatchCapturesRequest());
    CaptureEvent event;
    ASSERT_TRUE(reader->Read(&event));
    context.TryCancel();
    while (reader->Read(&event)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  if (!served.ShutdownWithin(std::chrono::seconds(20))) {
    ADD_FAILURE() << "server shutdown still waiting after 20 s: a cancelled "
                     "WatchCaptures call never finished";
    std::fflush(stdout);
    std::_Exit(1);  // the abandoned server cannot be destroyed
  }
}

}  // namespace
}  // namespace pc
