#include "common/pcapng_download.h"

#include <memory>
#include <string>
#include <vector>

#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"
#include "common/pcap/pcapng_test_util.h"
#include "gtest/gtest.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::DownloadCapturesRequest;

Capture Make(const std::string& id, const std::string& ns,
             const std::string& pod, const std::string& app,
             Capture::State state = Capture::RUNNING) {
  Capture c;
  c.set_id(id);
  c.set_namespace_(ns);
  c.set_pod(pod);
  c.set_node("node-a");
  c.set_pod_ip("198.18.0.7");
  c.set_interface("eth0");
  c.set_state(state);
  c.mutable_start_time()->set_seconds(1700000000);
  if (!app.empty()) (*c.mutable_pod_labels())["app"] = app;
  return c;
}

std::vector<Capture> All() {
  return {Make("c3", "demo", "web-2", "web"),
          Make("c1", "demo", "web-1", "web"),
          Make("c2", "demo", "db-0", "db", Capture::STOPPED),
          Make("c4", "other", "web-9", "web")};
}

std::vector<std::string> Ids(const std::vector<Capture>& v) {
  std::vector<std::string> ids;
  for (const auto& c : v) ids.push_back(c.id());
  return ids;
}

TEST(SelectCapturesTest, ByIdsInOrderWithoutDuplicates) {
  DownloadCapturesRequest r;
  r.add_ids("c4");
  r.add_ids("c1");
  r.add_ids("c4");
  r.set_namespace_("ignored");
  auto chosen = SelectCaptures(All(), r);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(Ids(*chosen), (std::vector<std::string>{"c4", "c1"}));
  r.add_ids("nope");
  EXPECT_EQ(SelectCaptures(All(), r).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SelectCapturesTest, ByFiltersAndLabelSelector) {
  DownloadCapturesRequest r;
  r.set_label_selector("app=web");
  auto chosen = SelectCaptures(All(), r);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(Ids(*chosen), (std::vector<std::string>{"c1", "c3", "c4"}));
  r.set_namespace_("demo");
  EXPECT_EQ(Ids(*SelectCaptures(All(), r)),
            (std::vector<std::string>{"c1", "c3"}));
  r.clear_label_selector();
  r.set_state(Capture::STOPPED);
  EXPECT_EQ(Ids(*SelectCaptures(All(), r)), (std::vector<std::string>{"c2"}));
  r.set_label_selector("app in (web");
  EXPECT_EQ(SelectCaptures(All(), r).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SelectCapturesTest, Limits) {
  DownloadCapturesRequest r;
  for (int i = 0; i <= kMaxMergedCaptures; ++i) r.add_ids("x");
  EXPECT_EQ(SelectCaptures(All(), r).status().code(),
            absl::StatusCode::kInvalidArgument);
  DownloadCapturesRequest f;
  f.set_label_selector("app=nothing");
  auto none = CheckChosen(0, f);
  EXPECT_EQ(none.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.message().find("app=nothing"), std::string::npos) << none;
  EXPECT_EQ(CheckChosen(257, f).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckChosen(256, f).ok());
}

TEST(PcapngMetadataTest, SectionAndInterfacesNameTheCaptures) {
  Capture c = Make("c1", "demo", "web-1", "web", Capture::STOPPED);
  c.mutable_stop_time()->set_seconds(1700000060);
  c.mutable_options()->set_filter("udp");
  PcapngInfo info{"prod-eu", "capture-aggregator"};
  auto shb = SectionFor({c}, info, false);
  EXPECT_EQ(shb.comment,
            "cluster prod-eu, 1 capture, from 2023-11-14T22:13:20.000Z to "
            "2023-11-14T22:14:20.000Z");
  EXPECT_EQ(shb.userappl, "capture-aggregator");
  EXPECT_EQ(SectionFor({c}, PcapngInfo{}, false).comment.find("cluster"),
            std::string::npos);
  auto idb = InterfaceFor(c);
  EXPECT_EQ(idb.name, "demo/web-1");
  EXPECT_EQ(idb.description,
            "pod demo/web-1, node node-a, pod IP 198.18.0.7, interface eth0, "
            "capture c1");
  EXPECT_EQ(idb.filter, "udp");
}

class StringSource : public pcap::ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<size_t> Read(std::string* out, size_t max) override {
    const size_t n = std::min(max, data_.size());
    out->append(data_, 0, n);
    data_.erase(0, n);
    return n;
  }
  bool Done() override { return data_.empty(); }

 private:
  std::string data_;
};

TEST(PcapngMetadataTest, StreamHasAnInterfacePerCaptureEvenWithoutData) {
  pcap::GlobalHeader h;
  std::vector<absl::StatusOr<std::unique_ptr<pcap::ByteSource>>> sources;
  sources.push_back(
      std::make_unique<StringSource>(pcap::testutil::MakePcapFile(h, 0, 3)));
  sources.push_back(absl::FailedPreconditionError("tcpdump never started"));
  auto stream =
      MakePcapngStream({Make("c1", "demo", "web-1", "web"),
                        Make("c2", "demo", "web-2", "web", Capture::FAILED)},
                       std::move(sources), PcapngInfo{}, false);
  std::string out;
  while (true) {
    auto n = stream->Read(&out, 1 << 16);
    ASSERT_TRUE(n.ok());
    if (*n == 0) break;
  }
  auto parsed = pcapng::testutil::ParsePcapng(out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->interfaces.size(), 2u);
  EXPECT_EQ(parsed->interfaces[1].options.at(2).at(0), "demo/web-2");
  EXPECT_EQ(parsed->interfaces[1].options.at(1).at(0),
            "no packets: tcpdump never started");
  EXPECT_EQ(parsed->packets.size(), 3u);
}

}  // namespace
}  // namespace pc
