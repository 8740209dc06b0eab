#include "common/pcap/pcapng_merger.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/pcap/byte_source.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"
#include "common/pcap/pcapng_test_util.h"
#include "gtest/gtest.h"

namespace pc::pcap {
namespace {

using pcapng::testutil::ParsedPcapng;
using pcapng::testutil::ParsePcapng;
using pcapng::testutil::SequenceOf;

// A pcap stream fed by the test; hands out at most `step` bytes per read
// (cutting records anywhere) and is Done once closed and drained.
class FakeSource : public ByteSource {
 public:
  explicit FakeSource(size_t step = 1 << 20) : step_(step) {}
  void Add(const std::string& data) { pending_ += data; }
  void Close() { closed_ = true; }
  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override {
    const size_t n = std::min({pending_.size(), max_bytes, step_});
    out->append(pending_, 0, n);
    pending_.erase(0, n);
    return n;
  }
  bool Done() override { return closed_ && pending_.empty(); }

 private:
  size_t step_;
  std::string pending_;
  bool closed_ = false;
};

// Records [first, first+count) stamped base + at_ms[i] (not MakeRecords'
// seq-based stamps: the tests choose the interleaving).
std::string Records(const GlobalHeader& h, uint32_t first,
                    const std::vector<int>& at_ms, size_t size = 60) {
  std::string out;
  const absl::Time base = absl::FromUnixSeconds(1700000000);
  for (size_t i = 0; i < at_ms.size(); ++i) {
    EXPECT_TRUE(AppendRecord(h, base + absl::Milliseconds(at_ms[i]),
                             testutil::MakePacket(first + i, size), 0, &out)
                    .ok());
  }
  return out;
}

MergeInput Input(std::unique_ptr<ByteSource> source, const std::string& name) {
  MergeInput in;
  in.source = std::move(source);
  in.interface.name = name;
  in.interface.description = "node n, capture " + name;
  return in;
}

std::string Drain(PcapngMerger& merger, size_t max_bytes = 64 * 1024) {
  std::string out;
  for (int i = 0; i < 100000; ++i) {
    auto n = merger.Read(&out, max_bytes);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || *n == 0) break;
  }
  return out;
}

std::vector<uint32_t> Seqs(const ParsedPcapng& p) {
  std::vector<uint32_t> s;
  for (const auto& pkt : p.packets) s.push_back(SequenceOf(pkt.data));
  return s;
}

TEST(PcapngMergerTest, MergesInTimestampOrderWithOneInterfaceEach) {
  GlobalHeader micro;
  GlobalHeader nano;
  nano.precision = TimestampPrecision::kNano;
  nano.big_endian = true;  // written on the other byte order
  nano.snaplen = 128;
  auto a = std::make_unique<FakeSource>(7);  // cuts records anywhere
  a->Add(SerializeGlobalHeader(micro) + Records(micro, 0, {0, 10, 20, 30}));
  auto b = std::make_unique<FakeSource>();
  b->Add(SerializeGlobalHeader(nano) + Records(nano, 100, {5, 10, 25}));
  std::vector<MergeInput> inputs;
  inputs.push_back(Input(std::move(a), "demo/a"));
  inputs.push_back(Input(std::move(b), "demo/b"));
  MergeOptions options;
  options.section.comment = "cluster test";
  PcapngMerger merger(std::move(inputs), options);
  const std::string out = Drain(merger, 100);  // small reads: many calls
  EXPECT_TRUE(merger.Done());
  EXPECT_EQ(merger.packets(), 7u);

  auto parsed = ParsePcapng(out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->section[1].at(0), "cluster test");
  ASSERT_EQ(parsed->interfaces.size(), 2u);
  EXPECT_EQ(parsed->interfaces[0].options.at(2).at(0), "demo/a");
  EXPECT_EQ(parsed->interfaces[0].options.at(9).at(0), std::string(1, 6));
  EXPECT_EQ(parsed->interfaces[1].options.at(2).at(0), "demo/b");
  EXPECT_EQ(parsed->interfaces[1].options.at(9).at(0), std::string(1, 9));
  EXPECT_EQ(parsed->interfaces[1].snaplen, 128u);
  // Ties (10 ms) go to the input listed first.
  EXPECT_EQ(Seqs(*parsed), (std::vector<uint32_t>{0, 100, 1, 101, 2, 102, 3}));
  EXPECT_EQ(parsed->packets[1].interface_id, 1u);
  EXPECT_EQ(parsed->packets[1].timestamp, 1700000000005000000ull);
  EXPECT_EQ(parsed->packets[0].timestamp, 1700000000000000ull);
}

TEST(PcapngMergerTest, EmptyAndHeaderOnlyInputsStillGetAnInterface) {
  GlobalHeader h;
  auto a = std::make_unique<FakeSource>();
  a->Add(SerializeGlobalHeader(h));
  auto b = std::make_unique<FakeSource>();  // nothing at all
  std::vector<MergeInput> inputs;
  inputs.push_back(Input(std::move(a), "demo/a"));
  inputs.push_back(Input(std::move(b), "demo/b"));
  PcapngMerger merger(std::move(inputs), MergeOptions{});
  auto parsed = ParsePcapng(Drain(merger));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->interfaces.size(), 2u);
  EXPECT_TRUE(parsed->packets.empty());
  EXPECT_TRUE(merger.Done());
}

TEST(PcapngMergerTest, NotAPcapIsDataLoss) {
  auto a = std::make_unique<FakeSource>();
  a->Add(std::string(64, 'x'));
  std::vector<MergeInput> inputs;
  inputs.push_back(Input(std::move(a), "demo/a"));
  PcapngMerger merger(std::move(inputs), MergeOptions{});
  std::string out;
  auto n = merger.Read(&out, 1024);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(n.status().message().find("demo/a"), std::string::npos);
}

TEST(PcapngMergerTest, ImplausibleRecordIsDataLoss) {
  GlobalHeader h;
  h.snaplen = 100;
  RecordHeader r;
  r.caplen = 5000;
  std::string bad = SerializeGlobalHeader(h);
  AppendRecordHeader(h, r, &bad);
  auto a = std::make_unique<FakeSource>();
  a->Add(bad);
  std::vector<MergeInput> inputs;
  inputs.push_back(Input(std::move(a), "demo/a"));
  PcapngMerger merger(std::move(inputs), MergeOptions{});
  std::string out;
  EXPECT_EQ(merger.Read(&out, 1024).status().code(),
            absl::StatusCode::kDataLoss);
}

// Follow mode with an injected clock (the packets are stamped around
// 1700000000 s; the clock is set relative to that).
class FollowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto a = std::make_unique<FakeSource>();
    auto b = std::make_unique<FakeSource>();
    a_ = a.get();
    b_ = b.get();
    std::vector<MergeInput> inputs;
    inputs.push_back(Input(std::move(a), "demo/a"));
    inputs.push_back(Input(std::move(b), "demo/b"));
    MergeOptions options;
    options.follow = true;
    options.max_wait = absl::Seconds(1);
    options.clock = [this] { return now_; };
    merger_ = std::make_unique<PcapngMerger>(std::move(inputs), options);
  }
  // Reads once; returns the packets' sequence numbers so far.
  std::vector<uint32_t> Step() {
    auto n = merger_->Read(&out_, 1 << 20);
    EXPECT_TRUE(n.ok()) << n.status();
    auto parsed = ParsePcapng(out_);
    if (out_.empty()) return {};
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return parsed.ok() ? Seqs(*parsed) : std::vector<uint32_t>{};
  }

  const absl::Time base_ = absl::FromUnixSeconds(1700000000);
  absl::Time now_ = base_ + absl::Milliseconds(100);
  GlobalHeader h_;
  FakeSource* a_;
  FakeSource* b_;
  std::unique_ptr<PcapngMerger> merger_;
  std::string out_;
};

TEST_F(FollowTest, WaitsForASilentLiveInputAtMostMaxWait) {
  // The nodes' clocks are ahead of ours: no record looks old enough to pass
  // a silent input, only silence ends the wait.
  now_ = base_ - absl::Seconds(10);
  a_->Add(SerializeGlobalHeader(h_) + Records(h_, 0, {10, 20}));
  b_->Add(SerializeGlobalHeader(h_));
  EXPECT_TRUE(Step().empty());  // b has nothing yet: a's records are held
  EXPECT_FALSE(out_.empty());   // but the SHB and both IDBs are out
  now_ += absl::Milliseconds(500);
  b_->Add(Records(h_, 100, {15}));
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100}));  // b silent again
  now_ += absl::Milliseconds(999);
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100}));
  now_ += absl::Milliseconds(1);  // b silent for max_wait: go on without it
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100, 1}));
  // A later record of b that is older than what was sent still arrives;
  // a, silent now, does not hold it: a's next record cannot be older than
  // its last one (20 ms).
  b_->Add(Records(h_, 101, {18}));
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100, 1, 101}));
  // But a record younger than a's last one waits for a (just fell silent).
  b_->Add(Records(h_, 102, {30}));
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100, 1, 101}));
  a_->Add(Records(h_, 2, {25}));
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100, 1, 101, 2}));
  now_ += absl::Seconds(1);
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100, 1, 101, 2, 102}));
  EXPECT_FALSE(merger_->Done());
  a_->Close();
  b_->Close();
  Step();
  EXPECT_TRUE(merger_->Done());
}

TEST_F(FollowTest, OldRecordsPassASilentInputAtOnce) {
  now_ = base_ + absl::Seconds(60);  // every record is a minute old
  a_->Add(SerializeGlobalHeader(h_) + Records(h_, 0, {10, 20, 30}));
  b_->Add(SerializeGlobalHeader(h_));
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 1, 2}));
}

TEST_F(FollowTest, WaitsForAMissingHeaderThenDescribesItLate) {
  a_->Add(SerializeGlobalHeader(h_) + Records(h_, 0, {10}));
  EXPECT_TRUE(Step().empty());
  EXPECT_TRUE(out_.empty());  // the SHB waits for b's header a while
  now_ += absl::Seconds(1);
  now_ += absl::Seconds(1);
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0}));
  b_->Add(SerializeGlobalHeader(h_) + Records(h_, 100, {2000}));
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0}));  // a fell silent: wait
  a_->Close();
  EXPECT_EQ(Step(), (std::vector<uint32_t>{0, 100}));
  auto parsed = ParsePcapng(out_);
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->interfaces.size(), 2u);
  ASSERT_EQ(parsed->packets.size(), 2u);
  EXPECT_EQ(parsed->interfaces[1].options.at(2).at(0), "demo/b");
  EXPECT_EQ(parsed->packets[1].interface_id, 1u);
}

TEST(PcapngMergerTest, ReadsRespectMaxBytes) {
  GlobalHeader h;
  auto a = std::make_unique<FakeSource>();
  a->Add(SerializeGlobalHeader(h) +
         Records(h, 0, std::vector<int>(50, 1), 1000));
  std::vector<MergeInput> inputs;
  inputs.push_back(Input(std::move(a), "demo/a"));
  PcapngMerger merger(std::move(inputs), MergeOptions{});
  std::string out;
  ASSERT_TRUE(merger.Read(&out, 1).ok());  // header blocks only
  for (int i = 0; i < 30; ++i) {
    std::string chunk;
    auto n = merger.Read(&chunk, 4000);
    ASSERT_TRUE(n.ok());
    EXPECT_LE(*n, 4000u);
    out += chunk;
  }
  auto parsed = ParsePcapng(out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->packets.size(), 50u);
}

// capinfos and tshark read the merged file: two interfaces named after the
// pods, every packet, timestamps in order.
TEST(PcapngMergerTest, WiresharkToolsReadTheMerge) {
  constexpr char kTshark[] = "/usr/bin/tshark";
  constexpr char kCapinfos[] = "/usr/bin/capinfos";
  if (access(kTshark, X_OK) != 0 || access(kCapinfos, X_OK) != 0) {
    GTEST_SKIP() << "no tshark/capinfos";
  }
  GlobalHeader micro;
  GlobalHeader nano;
  nano.precision = TimestampPrecision::kNano;
  std::vector<int> even, odd;
  for (int i = 0; i < 200; ++i) (i % 2 ? odd : even).push_back(i);
  auto a = std::make_unique<FakeSource>(1000);
  a->Add(SerializeGlobalHeader(micro) + Records(micro, 0, even, 90));
  auto b = std::make_unique<FakeSource>(333);
  b->Add(SerializeGlobalHeader(nano) + Records(nano, 1000, odd, 1400));
  std::vector<MergeInput> inputs;
  inputs.push_back(Input(std::move(a), "demo/web-1"));
  inputs.push_back(Input(std::move(b), "demo/web-2"));
  PcapngMerger merger(std::move(inputs), MergeOptions{});
  const std::string path = testutil::MakeTempDir() + "/merged.pcapng";
  testutil::WriteFile(path, Drain(merger));

  std::string info;
  ASSERT_EQ(
      pcapng::testutil::RunTool({kCapinfos, "-M", "-c", "-t", path}, &info), 0)
      << info;
  EXPECT_NE(info.find("pcapng"), std::string::npos) << info;
  EXPECT_NE(info.find("Number of packets:   200"), std::string::npos) << info;

  std::string text;
  ASSERT_EQ(pcapng::testutil::RunTool(
                {kTshark, "-r", path, "-T", "fields", "-e",
                 "frame.interface_name", "-e", "frame.time_epoch"},
                &text),
            0);
  std::vector<std::string> lines =
      absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 200u);
  std::string last;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], '\t');
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(f[0], i % 2 ? "demo/web-2" : "demo/web-1") << i;
    EXPECT_LE(last, f[1]) << i;  // same width: text order is time order
    last = f[1];
  }
}

}  // namespace
}  // namespace pc::pcap
