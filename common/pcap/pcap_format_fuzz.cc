// Fuzzes the pcap format code and the record cutter (ScanRecords) with bytes
// as a file would hold them: a global header, then records. Checked:
//  - a parsed header serializes back to the same 24 bytes;
//  - the cut point is a record boundary: walking the record headers from the
//    start lands exactly on complete_bytes, every record within it passes
//    CheckRecordHeader, and scanning only the bytes before the cut finds the
//    same records;
//  - a cut of a shorter prefix never lies beyond the full scan's cut;
//  - what stops the scan is either too few bytes for the next record or an
//    implausible header (then status is DataLoss);
//  - record headers encode back to their bytes; AppendRecord's record scans
//    back with the timestamp truncated to the file's precision.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/pcap/pcap_format.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::pcap::GlobalHeader;
using pc::pcap::kGlobalHeaderSize;
using pc::pcap::kRecordHeaderSize;
using pc::pcap::ScanResult;

void CheckSameScan(const ScanResult& a, const ScanResult& b,
                   const std::string& how) {
  FUZZ_CHECK(a.complete_bytes == b.complete_bytes, how);
  FUZZ_CHECK(a.records == b.records, how);
  FUZZ_CHECK(a.first_time == b.first_time, how);
  FUZZ_CHECK(a.last_time == b.last_time, how);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto header = pc::pcap::ParseGlobalHeader(bytes);
  if (!header.ok()) {
    if (size < kGlobalHeaderSize) {
      FUZZ_CHECK(absl::IsOutOfRange(header.status()),
                 header.status().ToString());
    } else {
      FUZZ_CHECK(absl::IsInvalidArgument(header.status()),
                 header.status().ToString());
    }
    return 0;
  }
  const GlobalHeader& h = *header;
  FUZZ_CHECK(
      pc::pcap::SerializeGlobalHeader(h) == bytes.substr(0, kGlobalHeaderSize),
      "header does not serialize back");
  FUZZ_CHECK(pc::pcap::MaxPlausibleCaplen(h) <= pc::pcap::kMaxCaplen,
             absl::StrCat(pc::pcap::MaxPlausibleCaplen(h)));

  const absl::string_view records = bytes.substr(kGlobalHeaderSize);
  const ScanResult scan = pc::pcap::ScanRecords(h, records);
  FUZZ_CHECK(scan.complete_bytes <= records.size(), "cut past the end");
  FUZZ_CHECK((scan.records == 0) == !scan.first_time.has_value(), "first_time");
  FUZZ_CHECK((scan.records == 0) == !scan.last_time.has_value(), "last_time");

  // Walk the records: the cut is the end of the last complete one.
  size_t pos = 0;
  uint64_t count = 0;
  while (pos < scan.complete_bytes) {
    auto r = pc::pcap::DecodeRecordHeader(h, records.substr(pos));
    FUZZ_CHECK(r.ok(), absl::StrCat("no record header at ", pos));
    FUZZ_CHECK(pc::pcap::CheckRecordHeader(h, *r).ok(),
               absl::StrCat("implausible record inside the cut at ", pos));
    std::string encoded;
    pc::pcap::AppendRecordHeader(h, *r, &encoded);
    FUZZ_CHECK(encoded == records.substr(pos, kRecordHeaderSize),
               "record header does not encode back");
    pos += kRecordHeaderSize + r->caplen;
    ++count;
  }
  FUZZ_CHECK(pos == scan.complete_bytes, "cut inside a record");
  FUZZ_CHECK(count == scan.records, "record count");

  // What stopped the scan.
  const absl::string_view rest = records.substr(scan.complete_bytes);
  if (scan.corrupt()) {
    FUZZ_CHECK(absl::IsDataLoss(scan.status), scan.status.ToString());
    auto r = pc::pcap::DecodeRecordHeader(h, rest);
    FUZZ_CHECK(r.ok() && !pc::pcap::CheckRecordHeader(h, *r).ok(),
               "corrupt without an implausible header");
  } else if (rest.size() >= kRecordHeaderSize) {
    auto r = pc::pcap::DecodeRecordHeader(h, rest);
    FUZZ_CHECK(r.ok() && rest.size() < kRecordHeaderSize + r->caplen,
               "stopped before a complete record");
  }

  // Scanning only what precedes the cut finds the same, cleanly.
  const ScanResult again =
      pc::pcap::ScanRecords(h, records.substr(0, scan.complete_bytes));
  CheckSameScan(scan, again, "rescan of the complete part");
  FUZZ_CHECK(!again.corrupt(), "rescan corrupt");
  // A writer that has written less: never a later cut.
  for (size_t k : {records.size() / 2, records.size() / 3,
                   scan.complete_bytes + 1, size_t{kRecordHeaderSize}}) {
    if (k > records.size()) continue;
    const ScanResult part = pc::pcap::ScanRecords(h, records.substr(0, k));
    FUZZ_CHECK(part.complete_bytes <= scan.complete_bytes,
               absl::StrCat("prefix ", k));
    FUZZ_CHECK(part.records <= scan.records, absl::StrCat("prefix ", k));
  }

  // AppendRecord round trip, timestamp taken from the first record bytes.
  if (records.size() >= 8) {
    auto r = pc::pcap::DecodeRecordHeader(
        h, absl::StrCat(records.substr(0, 8), std::string(8, '\0')));
    const absl::Time ts = absl::FromUnixSeconds(r->ts_sec) +
                          absl::Nanoseconds(r->ts_frac % 1000000000);
    const absl::string_view payload =
        records.substr(8, pc::pcap::MaxPlausibleCaplen(h));
    std::string out;
    if (pc::pcap::AppendRecord(h, ts, payload, 0, &out).ok()) {
      const ScanResult one = pc::pcap::ScanRecords(h, out);
      FUZZ_CHECK(one.records == 1 && one.complete_bytes == out.size() &&
                     !one.corrupt(),
                 "appended record does not scan");
      const absl::Duration unit =
          h.precision == pc::pcap::TimestampPrecision::kNano
              ? absl::Nanoseconds(1)
              : absl::Microseconds(1);
      FUZZ_CHECK(
          *one.first_time ==
              absl::UnixEpoch() + absl::Floor(ts - absl::UnixEpoch(), unit),
          absl::FormatTime(*one.first_time));
    }
  }
  return 0;
}
