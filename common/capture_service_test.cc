#include "common/capture_service.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
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

// A pcap stream of fixed bytes, for downloads.
class FixedSource : public PcapSource {
 public:
  // `endless`: never Done, as a running capture being followed.
  FixedSource(std::string data, bool endless)
      : data_(std::move(data)), endless_(endless) {}
  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override {
    size_t n = std::min(max_bytes, data_.size() - offset_);
    out->append(data_, offset_, n);
    offset_ += n;
    return n;
  }
  bool Done() override { return !endless_ && offset_ == data_.size(); }

 private:
  const std::string data_;
  const bool endless_;
  size_t offset_ = 0;
};

// A CaptureService on a real loopback port, with the given peer filter and
// authorizer. Downloads of capture X are the bytes "pcap of X".
class Served {
 public:
  explicit Served(PeerFilter allow_peer, ReadAuthorizer* authorizer = nullptr)
      : service_(&registry_, Opener(), std::move(allow_peer), authorizer) {
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
  CaptureServiceImpl& service() { return service_; }

 private:
  static PcapSourceOpener Opener() {
    return [](const Capture& capture,
              bool follow) -> absl::StatusOr<std::unique_ptr<PcapSource>> {
      return std::make_unique<FixedSource>("pcap of " + capture.id(), follow);
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

TEST(ParseBearerToken, AcceptsBearerSchemeOnly) {
  EXPECT_EQ(*ParseBearerToken("Bearer abc.def"), "abc.def");
  EXPECT_EQ(*ParseBearerToken("bearer   abc"), "abc");
  for (const char* bad : {"", "Bearer", "Bearer ", "Basic abc", "abc",
                          "Bearer a b", "Bearer a\tb", "Bearerabc"}) {
    EXPECT_EQ(ParseBearerToken(bad).status().code(),
              absl::StatusCode::kUnauthenticated)
        << bad;
  }
}

// Answers from a table (token -> readable namespaces); any other token is
// Unauthenticated, "broken" is Unavailable. Answers come from a thread of
// their own, as the API-backed authorizer's do, or are held back until
// ReleaseHeld() while Hold() is in force.
class FakeAuthorizer : public ReadAuthorizer {
 public:
  ~FakeAuthorizer() override {
    ReleaseHeld();
    absl::MutexLock lock(&mu_);
    for (auto& t : threads_) t.join();
  }

  void Allow(const std::string& token, std::set<std::string> namespaces) {
    absl::MutexLock lock(&mu_);
    table_[token] = std::move(namespaces);
  }
  void Forget(const std::string& token) {
    absl::MutexLock lock(&mu_);
    table_.erase(token);
  }
  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  void ReleaseHeld() {
    std::vector<std::function<void()>> held;
    {
      absl::MutexLock lock(&mu_);
      hold_ = false;
      held.swap(held_);
    }
    for (auto& answer : held) answer();
  }
  size_t held() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  std::vector<std::vector<std::string>> asked() {
    absl::MutexLock lock(&mu_);
    return asked_;
  }

  void CanRead(const std::string& token,
               const std::vector<std::string>& namespaces, Done done) override {
    absl::MutexLock lock(&mu_);
    asked_.push_back(namespaces);
    absl::StatusOr<std::vector<bool>> answer;
    auto it = table_.find(token);
    if (token == "broken") {
      answer = absl::UnavailableError("API server unreachable");
    } else if (it == table_.end()) {
      answer = absl::UnauthenticatedError("token rejected");
    } else {
      std::vector<bool> allowed;
      for (const auto& ns : namespaces) {
        allowed.push_back(it->second.count(ns) > 0);
      }
      answer = allowed;
    }
    auto call = [done = std::move(done), answer] { done(answer); };
    if (hold_) {
      held_.push_back(call);
    } else {
      threads_.emplace_back(call);
    }
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::set<std::string>> table_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> held_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> asked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

bool NotLoopback(absl::string_view) { return false; }

void Bearer(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
}

grpc::Status List(Served& served, const std::string& token,
                  const ListCapturesRequest& request,
                  packetcapture::v1::ListCapturesResponse* response) {
  grpc::ClientContext context;
  Bearer(&context, token);
  return served.stub().ListCaptures(&context, request, response);
}

grpc::Status Get(Served& served, const std::string& token,
                 const std::string& id, Capture* response) {
  grpc::ClientContext context;
  Bearer(&context, token);
  packetcapture::v1::GetCaptureRequest request;
  request.set_id(id);
  return served.stub().GetCapture(&context, request, response);
}

grpc::Status Download(Served& served, const std::string& token,
                      const std::string& id, std::string* data) {
  grpc::ClientContext context;
  Bearer(&context, token);
  packetcapture::v1::DownloadCaptureRequest request;
  request.set_id(id);
  auto reader = served.stub().DownloadCapture(&context, request);
  packetcapture::v1::DownloadCaptureResponse chunk;
  while (reader->Read(&chunk)) *data += chunk.data();
  return reader->Finish();
}

// Ids of the capture events of a watch, until SYNCED ("SYNCED" included).
struct WatchUntilSynced {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<CaptureEvent>> reader;
  std::vector<std::string> Initial() {
    std::vector<std::string> ids;
    CaptureEvent event;
    while (reader->Read(&event)) {
      if (event.type() == CaptureEvent::SYNCED) {
        ids.push_back("SYNCED");
        break;
      }
      ids.push_back(event.capture().id());
    }
    return ids;
  }
};

std::unique_ptr<WatchUntilSynced> Watch(Served& served,
                                        const std::string& token,
                                        const std::string& ns = "") {
  auto watch = std::make_unique<WatchUntilSynced>();
  Bearer(&watch->context, token);
  packetcapture::v1::WatchCapturesRequest request;
  request.set_namespace_(ns);
  watch->reader = served.stub().WatchCaptures(&watch->context, request);
  return watch;
}

// Captures a (web), b (web), c (db), d (web): the reader may read "web" only.
class ReadAccess : public ::testing::Test {
 protected:
  ReadAccess() : served_(NotLoopback, &authorizer_) {
    for (const Capture& c : Sample()) served_.registry().Put(c);
    authorizer_.Allow("web-reader", {"web"});
    authorizer_.Allow("nobody", {});
  }

  FakeAuthorizer authorizer_;  // outlives the server
  Served served_;
};

TEST_F(ReadAccess, NoTokenFromTheNetworkIsUnauthenticatedWithAHint) {
  auto unauthenticated = [](const grpc::Status& status) {
    return status.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
           absl::StrContains(status.error_message(), "kubectl create token");
  };
  packetcapture::v1::ListCapturesResponse list;
  EXPECT_TRUE(unauthenticated(List(served_, "", ListCapturesRequest(), &list)));
  EXPECT_EQ(list.captures_size(), 0);
  Capture capture;
  EXPECT_TRUE(unauthenticated(Get(served_, "", "a", &capture)));
  std::string data;
  EXPECT_TRUE(unauthenticated(Download(served_, "", "a", &data)));
  EXPECT_EQ(data, "");
  auto watch = Watch(served_, "");
  EXPECT_EQ(watch->Initial(), std::vector<std::string>{});
  EXPECT_TRUE(unauthenticated(watch->reader->Finish()));
  EXPECT_TRUE(authorizer_.asked().empty());
}

TEST_F(ReadAccess, BadTokenOrMalformedMetadataIsUnauthenticated) {
  packetcapture::v1::ListCapturesResponse list;
  EXPECT_EQ(List(served_, "stolen", ListCapturesRequest(), &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  Capture capture;
  // Also for an id that does not exist: the token is checked first.
  EXPECT_EQ(Get(served_, "stolen", "no-such-id", &capture).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  std::string data;
  EXPECT_EQ(Download(served_, "stolen", "a", &data).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto watch = Watch(served_, "stolen");
  EXPECT_EQ(watch->Initial(), std::vector<std::string>{});
  EXPECT_EQ(watch->reader->Finish().error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  grpc::ClientContext context;
  context.AddMetadata("authorization", "Basic d2ViOnJlYWRlcg==");
  EXPECT_EQ(served_.stub()
                .ListCaptures(&context, ListCapturesRequest(), &list)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The authorizer could not decide: UNAVAILABLE, retryable.
  EXPECT_EQ(List(served_, "broken", ListCapturesRequest(), &list).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ReadAccess, ListShowsOnlyReadableNamespacesAndPagesConsistently) {
  packetcapture::v1::ListCapturesResponse list;
  ASSERT_TRUE(List(served_, "web-reader", ListCapturesRequest(), &list).ok());
  EXPECT_EQ(Ids(list), (std::vector<std::string>{"b", "d", "a"}));
  EXPECT_EQ(list.total_size(), 3);
  // One question for the namespaces that hold captures.
  EXPECT_EQ(authorizer_.asked().back(),
            (std::vector<std::string>{"db", "web"}));

  ListCapturesRequest request;
  request.set_page_size(2);
  std::vector<std::string> all;
  for (int pages = 0; pages < 4; ++pages) {
    ASSERT_TRUE(List(served_, "web-reader", request, &list).ok());
    EXPECT_EQ(list.total_size(), 3);
    for (const auto& id : Ids(list)) all.push_back(id);
    if (list.next_page_token().empty()) break;
    request.set_page_token(list.next_page_token());
  }
  EXPECT_EQ(all, (std::vector<std::string>{"b", "d", "a"}));

  ASSERT_TRUE(List(served_, "nobody", ListCapturesRequest(), &list).ok());
  EXPECT_EQ(list.captures_size(), 0);
  EXPECT_EQ(list.total_size(), 0);
}

TEST_F(ReadAccess, ExplicitNamespaceFilterIsAskedEvenWhenEmpty) {
  packetcapture::v1::ListCapturesResponse list;
  ListCapturesRequest db;
  db.set_namespace_("db");
  grpc::Status status = List(served_, "web-reader", db, &list);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "\"db\""))
      << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(),
                                "get on captures.packetcapture.antrea.io"))
      << status.error_message();
  // No capture there, same answer: existence does not leak.
  ListCapturesRequest empty;
  empty.set_namespace_("kube-system");
  EXPECT_EQ(List(served_, "web-reader", empty, &list).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ListCapturesRequest web;
  web.set_namespace_("web");
  ASSERT_TRUE(List(served_, "web-reader", web, &list).ok());
  EXPECT_EQ(list.total_size(), 3);
}

TEST_F(ReadAccess, GetAndDownloadOfAnotherNamespaceArePermissionDenied) {
  Capture capture;
  ASSERT_TRUE(Get(served_, "web-reader", "a", &capture).ok());
  EXPECT_EQ(capture.namespace_(), "web");
  Capture other;
  EXPECT_EQ(Get(served_, "web-reader", "c", &other).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(other.id().empty());
  EXPECT_EQ(Get(served_, "web-reader", "no-such-id", &other).error_code(),
            grpc::StatusCode::NOT_FOUND);

  std::string data;
  ASSERT_TRUE(Download(served_, "web-reader", "a", &data).ok());
  EXPECT_EQ(data, "pcap of a");
  std::string denied;
  EXPECT_EQ(Download(served_, "web-reader", "c", &denied).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied, "");
  EXPECT_EQ(Download(served_, "nobody", "a", &denied).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied, "");
}

TEST_F(ReadAccess, WatchSendsOnlyReadableEventsInOrder) {
  auto watch = Watch(served_, "web-reader");
  EXPECT_EQ(watch->Initial(),
            (std::vector<std::string>{"a", "b", "d", "SYNCED"}));
  served_.registry().Put(Make("e", "node-b", "db", 400, Capture::RUNNING));
  served_.registry().Put(Make("f", "node-b", "web", 400, Capture::RUNNING));
  CaptureEvent event;
  ASSERT_TRUE(watch->reader->Read(&event));
  EXPECT_EQ(event.capture().id(), "f");  // e (db) was left out

  // The token stops being valid: the next event ends the watch.
  authorizer_.Forget("web-reader");
  served_.registry().Put(Make("g", "node-b", "web", 500, Capture::RUNNING));
  EXPECT_FALSE(watch->reader->Read(&event));
  EXPECT_EQ(watch->reader->Finish().error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ReadAccess, WatchOfAnUnreadableNamespaceIsPermissionDenied) {
  auto watch = Watch(served_, "web-reader", "db");
  EXPECT_EQ(watch->Initial(), std::vector<std::string>{});
  EXPECT_EQ(watch->reader->Finish().error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto nothing = Watch(served_, "nobody");
  EXPECT_EQ(nothing->Initial(), std::vector<std::string>{"SYNCED"});
  nothing->context.TryCancel();
  nothing->reader->Finish();
}

TEST_F(ReadAccess, FollowEndsOnceTheTokenMayNoLongerRead) {
  served_.service().SetFollowRecheckInterval(absl::Milliseconds(200));
  grpc::ClientContext context;
  Bearer(&context, "web-reader");
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  packetcapture::v1::DownloadCaptureRequest request;
  request.set_id("a");
  request.set_follow(true);
  auto reader = served_.stub().DownloadCapture(&context, request);
  packetcapture::v1::DownloadCaptureResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.data(), "pcap of a");
  // Still following after a few rechecks that say yes.
  absl::SleepFor(absl::Milliseconds(700));
  const size_t asked = authorizer_.asked().size();
  EXPECT_GE(asked, 3u);
  authorizer_.Allow("web-reader", {"db"});  // the binding in "web" is gone
  const absl::Time revoked = absl::Now();
  EXPECT_FALSE(reader->Read(&chunk));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << status.error_message();
  EXPECT_LT(absl::Now() - revoked, absl::Seconds(2));
}

TEST(ReadAccessPeers, LoopbackWithoutTokenReadsEverythingWithATokenAsItSays) {
  FakeAuthorizer authorizer;
  authorizer.Allow("web-reader", {"web"});
  Served served(IsLoopbackPeer, &authorizer);
  served.registry().Put(Make("c", "node-a", "db", 200, Capture::RUNNING));
  packetcapture::v1::ListCapturesResponse list;
  ASSERT_TRUE(List(served, "", ListCapturesRequest(), &list).ok());
  EXPECT_EQ(Ids(list), (std::vector<std::string>{"c", "a"}));
  EXPECT_TRUE(authorizer.asked().empty());
  // A token sent is always checked, loopback or not.
  ASSERT_TRUE(List(served, "web-reader", ListCapturesRequest(), &list).ok());
  EXPECT_EQ(Ids(list), (std::vector<std::string>{"a"}));
  EXPECT_EQ(List(served, "stolen", ListCapturesRequest(), &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST(ReadAccessPeers, WithoutAuthorizerTokensAreIgnored) {
  Served loopback(IsLoopbackPeer);
  packetcapture::v1::ListCapturesResponse list;
  ASSERT_TRUE(List(loopback, "anything", ListCapturesRequest(), &list).ok());
  EXPECT_EQ(list.captures_size(), 1);
  Served remote(NotLoopback);
  EXPECT_EQ(List(remote, "anything", ListCapturesRequest(), &list).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// Calls waiting for the authorizer end when their client gives up, and a late
// answer touches nothing that is gone (ASan checks the second half).
TEST_F(ReadAccess, CallsWaitingForTheAuthorizerCanBeCancelled) {
  authorizer_.Hold();
  auto soon = [] {
    return std::chrono::system_clock::now() + std::chrono::milliseconds(200);
  };
  {
    grpc::ClientContext context;
    Bearer(&context, "web-reader");
    context.set_deadline(soon());
    packetcapture::v1::ListCapturesResponse list;
    EXPECT_EQ(served_.stub()
                  .ListCaptures(&context, ListCapturesRequest(), &list)
                  .error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    grpc::ClientContext context;
    Bearer(&context, "web-reader");
    context.set_deadline(soon());
    packetcapture::v1::DownloadCaptureRequest request;
    request.set_id("a");
    auto reader = served_.stub().DownloadCapture(&context, request);
    packetcapture::v1::DownloadCaptureResponse chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    auto watch = Watch(served_, "web-reader");
    for (int i = 0; i < 500 && authorizer_.held() < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    watch->context.TryCancel();
    EXPECT_EQ(watch->Initial(), std::vector<std::string>{});
    EXPECT_EQ(watch->reader->Finish().error_code(),
              grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(authorizer_.held(), 3u);
  authorizer_.ReleaseHeld();
  // The service still answers.
  packetcapture::v1::ListCapturesResponse list;
  ASSERT_TRUE(List(served_, "web-reader", ListCapturesRequest(), &list).ok());
  EXPECT_EQ(list.total_size(), 3);
}

}  // namespace
}  // namespace pc
