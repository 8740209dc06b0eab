// Fuzzes PcapngMerger with 1 to 4 inputs of arbitrary bytes, handed out in
// small reads, with or without follow (a fake clock that advances on every
// read; followed inputs end some reads after they ran dry). Checked:
//  - a failure is DataLoss, and what was sent before it is whole blocks;
//  - otherwise the output is one valid pcapng section with an interface per
//    input, holding exactly each input's complete records in its order, with
//    their lengths and timestamps;
//  - without follow, when every input is in time order, so is the output;
//  - a read returns at most max_bytes, unless it holds a single block.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/pcap/byte_source.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcapng_merger.h"
#include "common/pcap/pcapng_test_util.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::pcap::GlobalHeader;
using pc::pcap::kGlobalHeaderSize;
using pc::pcap::kRecordHeaderSize;

struct Record {
  uint64_t timestamp;  // in the input's own units
  uint32_t orig_len;
  std::string data;
};

class Source : public pc::pcap::ByteSource {
 public:
  Source(std::string data, size_t step, bool follow)
      : data_(std::move(data)), step_(step), follow_(follow) {}
  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override {
    const size_t n = std::min({step_, max_bytes, data_.size() - at_});
    out->append(data_, at_, n);
    at_ += n;
    if (n == 0) ++dry_reads_;
    return n;
  }
  bool Done() override {
    return at_ == data_.size() && (!follow_ || dry_reads_ >= 3);
  }

 private:
  const std::string data_;
  const size_t step_;
  const bool follow_;
  size_t at_ = 0;
  int dry_reads_ = 0;
};

// The records a correct merger takes from `data`; false when it must fail.
bool Expected(const std::string& data, std::vector<Record>* records,
              bool* nano) {
  if (data.size() < kGlobalHeaderSize) return true;  // no header: no packets
  auto header = pc::pcap::ParseGlobalHeader(data);
  if (!header.ok()) return false;
  *nano = header->precision == pc::pcap::TimestampPrecision::kNano;
  absl::string_view rest = absl::string_view(data).substr(kGlobalHeaderSize);
  const pc::pcap::ScanResult scan = pc::pcap::ScanRecords(*header, rest);
  if (scan.corrupt()) return false;
  size_t at = 0;
  while (at < scan.complete_bytes) {
    auto r = pc::pcap::DecodeRecordHeader(*header, rest.substr(at));
    Record rec;
    rec.timestamp =
        uint64_t{r->ts_sec} * (*nano ? 1000000000u : 1000000u) + r->ts_frac;
    rec.orig_len = r->len;
    rec.data = std::string(rest.substr(at + kRecordHeaderSize, r->caplen));
    records->push_back(std::move(rec));
    at += kRecordHeaderSize + r->caplen;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  const uint8_t flags = in.Byte();
  const bool follow = (flags & 1) != 0;
  const int n = 1 + ((flags >> 1) & 3);
  const size_t step = 1 + in.Byte();
  const size_t max_bytes = 64 * (1 + size_t{in.Byte()});
  std::vector<std::string> raw(n);
  for (auto& r : raw) r = in.LengthPrefixed();

  std::vector<pc::pcap::MergeInput> inputs;
  std::vector<std::vector<Record>> expected(n);
  std::vector<bool> nano(n, false);
  bool must_fail = false;
  for (int i = 0; i < n; ++i) {
    bool is_nano = false;
    if (!Expected(raw[i], &expected[i], &is_nano)) must_fail = true;
    nano[i] = is_nano;
    pc::pcap::MergeInput mi;
    mi.source = std::make_unique<Source>(raw[i], step, follow);
    mi.interface.name = absl::StrCat("in", i);
    inputs.push_back(std::move(mi));
  }
  absl::Time now = absl::FromUnixSeconds(1700000000);
  pc::pcap::MergeOptions options;
  options.follow = follow;
  options.clock = [&now] { return now; };
  pc::pcap::PcapngMerger merger(std::move(inputs), options);

  std::string out;
  absl::Status failure;
  bool first = true;
  for (int reads = 0; reads < 20000; ++reads) {
    std::string chunk;
    auto got = merger.Read(&chunk, max_bytes);
    now += absl::Milliseconds(300);
    if (!got.ok()) {
      failure = got.status();
      break;
    }
    FUZZ_CHECK(*got == chunk.size(), "returned size");
    if (!first && *got > max_bytes) {
      uint32_t block_len;
      std::memcpy(&block_len, chunk.data() + 4, 4);
      FUZZ_CHECK(block_len == chunk.size(),
                 absl::StrCat("read of ", *got, " > max ", max_bytes));
    }
    if (*got > 0) first = false;
    out += chunk;
    if (*got == 0 && (!follow || merger.Done())) break;
  }
  auto parsed = pc::pcapng::testutil::ParsePcapng(out);
  if (!failure.ok()) {
    FUZZ_CHECK(absl::IsDataLoss(failure), failure.ToString());
    FUZZ_CHECK(must_fail, "failed on valid inputs: " + failure.ToString());
    FUZZ_CHECK(out.empty() || parsed.ok(), parsed.status().ToString());
    return 0;
  }
  FUZZ_CHECK(!must_fail, "accepted an invalid input");
  FUZZ_CHECK(merger.Done(), "not done at the end");
  FUZZ_CHECK(parsed.ok(), parsed.status().ToString());
  FUZZ_CHECK(parsed->interfaces.size() == static_cast<size_t>(n),
             absl::StrCat(parsed->interfaces.size(), " interfaces"));
  // Interface id -> input, by name.
  std::vector<int> input_of;
  for (const auto& idb : parsed->interfaces) {
    const std::string& name = idb.options.at(2).at(0);
    input_of.push_back(name[2] - '0');
  }
  std::vector<size_t> next(n, 0);
  std::vector<uint64_t> keys;
  for (const auto& p : parsed->packets) {
    const int i = input_of[p.interface_id];
    FUZZ_CHECK(next[i] < expected[i].size(), "extra packet");
    const Record& want = expected[i][next[i]++];
    FUZZ_CHECK(p.data == want.data, "packet data");
    FUZZ_CHECK(p.orig_len == want.orig_len, "orig_len");
    FUZZ_CHECK(p.timestamp == want.timestamp, "timestamp");
    keys.push_back(nano[i] ? p.timestamp : p.timestamp * 1000);
  }
  bool sorted_inputs = true;
  for (int i = 0; i < n; ++i) {
    FUZZ_CHECK(next[i] == expected[i].size(), "missing packets");
    for (size_t k = 1; k < expected[i].size(); ++k) {
      if (expected[i][k].timestamp < expected[i][k - 1].timestamp) {
        sorted_inputs = false;
      }
    }
  }
  if (!follow && sorted_inputs) {
    for (size_t k = 1; k < keys.size(); ++k) {
      FUZZ_CHECK(keys[k - 1] <= keys[k], "out of time order");
    }
  }
  return 0;
}
