// pcapng downloads and label selectors through a real gRPC server:
// DownloadCaptures, DownloadCapture with FORMAT_PCAPNG, label_selector on
// ListCaptures and WatchCaptures, and read access for merged downloads.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/capture_registry.h"
#include "common/capture_service.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"
#include "common/pcap/pcapng_test_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;
using packetcapture::v1::DownloadCaptureRequest;
using packetcapture::v1::DownloadCaptureResponse;
using packetcapture::v1::DownloadCapturesRequest;

// Capture `id` has 3 packets with sequence numbers seq_base..seq_base+2,
// stamped seq ms after a fixed base (so different captures interleave).
struct Spec {
  std::string id, ns, pod, app;
  uint32_t seq_base;
};

const std::vector<Spec>& Specs() {
  static const auto* specs =
      new std::vector<Spec>{{"c1", "web", "web-1", "web", 0},
                            {"c2", "web", "web-2", "web", 1},
                            {"c3", "db", "db-0", "db", 2},
                            {"c4", "web", "api-0", "api", 5}};
  return *specs;
}

// A pcap whose records are seq_base, seq_base+3, seq_base+6 (interleaving
// with the other captures'); never Done when followed.
class PcapOf : public PcapSource {
 public:
  PcapOf(uint32_t seq_base, bool follow) : follow_(follow) {
    pcap::GlobalHeader h;
    data_ = pcap::SerializeGlobalHeader(h);
    for (uint32_t i = 0; i < 3; ++i) {
      data_ += pcap::testutil::MakeRecords(h, seq_base + 3 * i, 1);
    }
  }
  absl::StatusOr<size_t> Read(std::string* out, size_t max) override {
    const size_t n = std::min(max, data_.size() - at_);
    out->append(data_, at_, n);
    at_ += n;
    return n;
  }
  bool Done() override { return !follow_ && at_ == data_.size(); }

 private:
  const bool follow_;
  std::string data_;
  size_t at_ = 0;
};

// Answers inline from a table: token -> readable namespaces.
class TableAuthorizer : public ReadAuthorizer {
 public:
  std::map<std::string, std::set<std::string>> table;
  void CanRead(const std::string& token,
               const std::vector<std::string>& namespaces, Done done) override {
    auto it = table.find(token);
    if (it == table.end()) {
      done(absl::UnauthenticatedError("token rejected"));
      return;
    }
    std::vector<bool> allowed;
    for (const auto& ns : namespaces) allowed.push_back(it->second.count(ns));
    done(allowed);
  }
};

class Downloads : public ::testing::Test {
 protected:
  Downloads()
      : service_(
            &registry_,
            [](const Capture& c,
               bool follow) -> absl::StatusOr<std::unique_ptr<PcapSource>> {
              for (const Spec& s : Specs()) {
                if (s.id == c.id()) {
                  return std::make_unique<PcapOf>(s.seq_base, follow);
                }
              }
              return absl::FailedPreconditionError("no files");
            },
            IsLoopbackPeer, &authorizer_) {
    for (const Spec& s : Specs()) {
      Capture c;
      c.set_id(s.id);
      c.set_namespace_(s.ns);
      c.set_pod(s.pod);
      c.set_node("node-a");
      c.set_pod_ip("198.18.0.9");
      c.set_state(Capture::RUNNING);
      c.mutable_start_time()->set_seconds(1700000000);
      (*c.mutable_pod_labels())["app"] = s.app;
      registry_.Put(c);
    }
    authorizer_.table["web-reader"] = {"web"};
    service_.SetPcapngInfo(PcapngInfo{"test-cluster", "capture-test"});
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
  ~Downloads() override { server_->Shutdown(); }

  grpc::Status Merge(const DownloadCapturesRequest& request, std::string* data,
                     const std::string& token = "") {
    grpc::ClientContext context;
    if (!token.empty()) {
      context.AddMetadata("authorization", "Bearer " + token);
    }
    auto reader = stub_->DownloadCaptures(&context, request);
    DownloadCaptureResponse chunk;
    while (reader->Read(&chunk)) *data += chunk.data();
    return reader->Finish();
  }

  static std::vector<std::string> Names(
      const pcapng::testutil::ParsedPcapng& p) {
    std::vector<std::string> names;
    for (const auto& i : p.interfaces) names.push_back(i.options.at(2).at(0));
    return names;
  }

  TableAuthorizer authorizer_;
  CaptureRegistry registry_;
  CaptureServiceImpl service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<packetcapture::v1::CaptureService::Stub> stub_;
};

TEST_F(Downloads, BySelectorMergesInTimeOrderWithAnInterfacePerCapture) {
  DownloadCapturesRequest request;
  request.set_label_selector("app in (web,db)");
  std::string data;
  grpc::Status status = Merge(request, &data);
  ASSERT_TRUE(status.ok()) << status.error_message();
  auto parsed = pcapng::testutil::ParsePcapng(data);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  // Ordered by namespace, then pod.
  EXPECT_EQ(Names(*parsed),
            (std::vector<std::string>{"db/db-0", "web/web-1", "web/web-2"}));
  EXPECT_EQ(parsed->interfaces[1].options.at(3).at(0),
            "pod web/web-1, node node-a, pod IP 198.18.0.9, capture c1");
  EXPECT_TRUE(absl::StartsWith(parsed->section.at(1).at(0),
                               "cluster test-cluster, 3 captures"))
      << parsed->section.at(1).at(0);
  EXPECT_EQ(parsed->section.at(4).at(0), "capture-test");
  std::vector<uint32_t> seqs;
  for (const auto& p : parsed->packets) {
    seqs.push_back(pcapng::testutil::SequenceOf(p.data));
  }
  EXPECT_EQ(seqs, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST_F(Downloads, ByIdsAndPcapngDownloadOfOne) {
  DownloadCapturesRequest request;
  request.add_ids("c4");
  request.add_ids("c1");
  std::string data;
  ASSERT_TRUE(Merge(request, &data).ok());
  auto parsed = pcapng::testutil::ParsePcapng(data);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(Names(*parsed),
            (std::vector<std::string>{"web/api-0", "web/web-1"}));
  EXPECT_EQ(parsed->packets.size(), 6u);

  grpc::ClientContext context;
  DownloadCaptureRequest one;
  one.set_id("c3");
  one.set_format(packetcapture::v1::FORMAT_PCAPNG);
  auto reader = stub_->DownloadCapture(&context, one);
  DownloadCaptureResponse chunk;
  std::string single;
  while (reader->Read(&chunk)) single += chunk.data();
  ASSERT_TRUE(reader->Finish().ok());
  parsed = pcapng::testutil::ParsePcapng(single);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(Names(*parsed), (std::vector<std::string>{"db/db-0"}));
  EXPECT_EQ(parsed->packets.size(), 3u);
}

TEST_F(Downloads, BadRequestsSayWhy) {
  auto code = [this](const DownloadCapturesRequest& r) {
    std::string data;
    return Merge(r, &data).error_code();
  };
  DownloadCapturesRequest none;
  none.set_label_selector("app=nothing");
  EXPECT_EQ(code(none), grpc::StatusCode::NOT_FOUND);
  DownloadCapturesRequest unknown;
  unknown.add_ids("c1");
  unknown.add_ids("zz");
  EXPECT_EQ(code(unknown), grpc::StatusCode::NOT_FOUND);
  DownloadCapturesRequest bad;
  bad.set_label_selector("app in web");
  EXPECT_EQ(code(bad), grpc::StatusCode::INVALID_ARGUMENT);
  DownloadCapturesRequest many;
  for (int i = 0; i < 257; ++i) many.add_ids("c1");
  EXPECT_EQ(code(many), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext context;
  DownloadCaptureRequest format;
  format.set_id("c1");
  format.set_format(static_cast<packetcapture::v1::CaptureFormat>(7));
  auto reader = stub_->DownloadCapture(&context, format);
  DownloadCaptureResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(Downloads, SelectorsFilterListAndWatch) {
  grpc::ClientContext context;
  packetcapture::v1::ListCapturesRequest list;
  list.set_label_selector("app!=web");
  packetcapture::v1::ListCapturesResponse listed;
  ASSERT_TRUE(stub_->ListCaptures(&context, list, &listed).ok());
  std::set<std::string> ids;
  for (const auto& c : listed.captures()) ids.insert(c.id());
  EXPECT_EQ(ids, (std::set<std::string>{"c3", "c4"}));

  grpc::ClientContext bad_context;
  list.set_label_selector("app=(web)");
  EXPECT_EQ(stub_->ListCaptures(&bad_context, list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext watch_context;
  packetcapture::v1::WatchCapturesRequest watch;
  watch.set_label_selector("app=db");
  auto reader = stub_->WatchCaptures(&watch_context, watch);
  CaptureEvent event;
  std::vector<std::string> seen;
  while (reader->Read(&event) && event.type() != CaptureEvent::SYNCED) {
    seen.push_back(event.capture().id());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"c3"}));
  watch_context.TryCancel();
  reader->Finish();

  grpc::ClientContext bad_watch_context;
  watch.set_label_selector("!");
  auto bad_reader = stub_->WatchCaptures(&bad_watch_context, watch);
  EXPECT_FALSE(bad_reader->Read(&event));
  EXPECT_EQ(bad_reader->Finish().error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// Through a token: ids need every namespace; filters leave unreadable
// captures out (as ListCaptures), an explicit unreadable namespace is
// refused.
TEST_F(Downloads, MergedDownloadsAuthorizeEveryNamespace) {
  DownloadCapturesRequest ids;
  ids.add_ids("c1");
  ids.add_ids("c3");
  std::string data;
  EXPECT_EQ(Merge(ids, &data, "web-reader").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(Merge(ids, &data, "stranger").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  DownloadCapturesRequest all;  // no filters: what the token may read
  data.clear();
  ASSERT_TRUE(Merge(all, &data, "web-reader").ok());
  auto parsed = pcapng::testutil::ParsePcapng(data);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(Names(*parsed),
            (std::vector<std::string>{"web/api-0", "web/web-1", "web/web-2"}));

  DownloadCapturesRequest db;
  db.set_namespace_("db");
  data.clear();
  EXPECT_EQ(Merge(db, &data, "web-reader").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  DownloadCapturesRequest db_only;
  db_only.set_label_selector("app=db");
  EXPECT_EQ(Merge(db_only, &data, "web-reader").error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(Downloads, FollowedMergeSendsWhatExistsAndStaysOpen) {
  grpc::ClientContext context;
  DownloadCapturesRequest request;
  request.set_namespace_("web");
  request.set_follow(true);
  auto reader = stub_->DownloadCaptures(&context, request);
  std::string data;
  DownloadCaptureResponse chunk;
  // Every packet is old (2023): nothing waits for the silent live inputs.
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(reader->Read(&chunk));
    data += chunk.data();
    auto parsed = pcapng::testutil::ParsePcapng(data);
    if (parsed.ok() && parsed->packets.size() == 9) break;
  }
  auto parsed = pcapng::testutil::ParsePcapng(data);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->packets.size(), 9u);
  EXPECT_NE(parsed->section.at(1).at(0).find("followed"), std::string::npos)
      << parsed->section.at(1).at(0);
  context.TryCancel();
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace pc
