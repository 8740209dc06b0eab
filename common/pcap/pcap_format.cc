#include "common/pcap/pcap_format.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pc::pcap {
namespace {

// Fields are decoded byte by byte so the result does not depend on the host's
// byte order or on the alignment of `p`.
uint32_t Load32(const char* p, bool big_endian) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  if (big_endian) {
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
           (uint32_t{b[2]} << 8) | uint32_t{b[3]};
  }
  return (uint32_t{b[3]} << 24) | (uint32_t{b[2]} << 16) |
         (uint32_t{b[1]} << 8) | uint32_t{b[0]};
}

uint16_t Load16(const char* p, bool big_endian) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  if (big_endian) return static_cast<uint16_t>((b[0] << 8) | b[1]);
  return static_cast<uint16_t>((b[1] << 8) | b[0]);
}

void Append32(uint32_t v, bool big_endian, std::string* out) {
  char b[4];
  for (int i = 0; i < 4; ++i) {
    const int shift = big_endian ? 8 * (3 - i) : 8 * i;
    b[i] = static_cast<char>((v >> shift) & 0xff);
  }
  out->append(b, 4);
}

void Append16(uint16_t v, bool big_endian, std::string* out) {
  char b[2];
  b[0] = static_cast<char>(big_endian ? (v >> 8) : (v & 0xff));
  b[1] = static_cast<char>(big_endian ? (v & 0xff) : (v >> 8));
  out->append(b, 2);
}

}  // namespace

bool operator==(const GlobalHeader& a, const GlobalHeader& b) {
  return a.big_endian == b.big_endian && a.precision == b.precision &&
         a.version_major == b.version_major &&
         a.version_minor == b.version_minor && a.thiszone == b.thiszone &&
         a.sigfigs == b.sigfigs && a.snaplen == b.snaplen &&
         a.linktype == b.linktype;
}

bool SameStreamFormat(const GlobalHeader& a, const GlobalHeader& b) {
  return a.big_endian == b.big_endian && a.precision == b.precision &&
         a.version_major == b.version_major &&
         a.version_minor == b.version_minor && a.snaplen == b.snaplen &&
         a.linktype == b.linktype;
}

absl::StatusOr<GlobalHeader> ParseGlobalHeader(absl::string_view data) {
  if (data.size() < kGlobalHeaderSize) {
    return absl::OutOfRangeError(absl::StrCat("pcap global header needs ",
                                              kGlobalHeaderSize,
                                              " bytes, have ", data.size()));
  }
  GlobalHeader h;
  // Try both byte orders: exactly one of them yields a known magic.
  const uint32_t le = Load32(data.data(), /*big_endian=*/false);
  const uint32_t be = Load32(data.data(), /*big_endian=*/true);
  if (le == kMagicMicros || le == kMagicNanos) {
    h.big_endian = false;
    h.precision = le == kMagicNanos ? TimestampPrecision::kNano
                                    : TimestampPrecision::kMicro;
  } else if (be == kMagicMicros || be == kMagicNanos) {
    h.big_endian = true;
    h.precision = be == kMagicNanos ? TimestampPrecision::kNano
                                    : TimestampPrecision::kMicro;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "not a pcap file: unknown magic number 0x%08x (pcapng and other "
        "formats are not supported)",
        be));
  }
  const char* p = data.data();
  h.version_major = Load16(p + 4, h.big_endian);
  h.version_minor = Load16(p + 6, h.big_endian);
  h.thiszone = static_cast<int32_t>(Load32(p + 8, h.big_endian));
  h.sigfigs = Load32(p + 12, h.big_endian);
  h.snaplen = Load32(p + 16, h.big_endian);
  h.linktype = Load32(p + 20, h.big_endian);
  // libpcap itself refuses other major versions, so no reader downstream
  // could use such a file.
  if (h.version_major != kVersionMajor) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported pcap version ", h.version_major, ".",
                     h.version_minor, " (only 2.x is supported)"));
  }
  return h;
}

std::string SerializeGlobalHeader(const GlobalHeader& header) {
  std::string out;
  out.reserve(kGlobalHeaderSize);
  Append32(header.magic(), header.big_endian, &out);
  Append16(header.version_major, header.big_endian, &out);
  Append16(header.version_minor, header.big_endian, &out);
  Append32(static_cast<uint32_t>(header.thiszone), header.big_endian, &out);
  Append32(header.sigfigs, header.big_endian, &out);
  Append32(header.snaplen, header.big_endian, &out);
  Append32(header.linktype, header.big_endian, &out);
  return out;
}

absl::Time RecordHeader::Timestamp(TimestampPrecision precision) const {
  // ts_sec is unsigned in current libpcap, which makes the format good until
  // 2106 rather than 2038.
  const absl::Time sec = absl::FromUnixSeconds(int64_t{ts_sec});
  return precision == TimestampPrecision::kNano
             ? sec + absl::Nanoseconds(ts_frac)
             : sec + absl::Microseconds(ts_frac);
}

absl::StatusOr<RecordHeader> DecodeRecordHeader(const GlobalHeader& header,
                                                absl::string_view data) {
  if (data.size() < kRecordHeaderSize) {
    return absl::OutOfRangeError(absl::StrCat("pcap record header needs ",
                                              kRecordHeaderSize,
                                              " bytes, have ", data.size()));
  }
  const char* p = data.data();
  RecordHeader r;
  r.ts_sec = Load32(p, header.big_endian);
  r.ts_frac = Load32(p + 4, header.big_endian);
  r.caplen = Load32(p + 8, header.big_endian);
  r.len = Load32(p + 12, header.big_endian);
  return r;
}

uint32_t MaxPlausibleCaplen(const GlobalHeader& header) {
  const uint64_t snaplen = (header.snaplen == 0 || header.snaplen > kMaxCaplen)
                               ? kMaxCaplen
                               : header.snaplen;
  return static_cast<uint32_t>(
      std::min<uint64_t>(kMaxCaplen, snaplen + kSnaplenSlack));
}

absl::Status CheckRecordHeader(const GlobalHeader& header,
                               const RecordHeader& record) {
  const uint32_t max = MaxPlausibleCaplen(header);
  if (record.caplen > max) {
    return absl::DataLossError(absl::StrCat("implausible pcap record: caplen ",
                                            record.caplen, " exceeds ", max,
                                            " (snaplen ", header.snaplen, ")"));
  }
  return absl::OkStatus();
}

void AppendRecordHeader(const GlobalHeader& header, const RecordHeader& record,
                        std::string* out) {
  Append32(record.ts_sec, header.big_endian, out);
  Append32(record.ts_frac, header.big_endian, out);
  Append32(record.caplen, header.big_endian, out);
  Append32(record.len, header.big_endian, out);
}

absl::Status AppendRecord(const GlobalHeader& header, absl::Time timestamp,
                          absl::string_view data, uint32_t orig_len,
                          std::string* out) {
  const absl::Duration since_epoch = timestamp - absl::UnixEpoch();
  if (since_epoch < absl::ZeroDuration() ||
      since_epoch >= absl::Seconds(int64_t{1} << 32)) {
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp ", absl::FormatTime(timestamp),
                     " does not fit a pcap record"));
  }
  if (data.size() > MaxPlausibleCaplen(header)) {
    return absl::InvalidArgumentError(
        absl::StrCat("record of ", data.size(), " bytes exceeds the maximum ",
                     MaxPlausibleCaplen(header)));
  }
  absl::Duration frac;
  const int64_t sec = absl::IDivDuration(since_epoch, absl::Seconds(1), &frac);
  RecordHeader r;
  r.ts_sec = static_cast<uint32_t>(sec);
  // Truncate, as libpcap does when it converts a kernel timestamp.
  absl::Duration unused_rem;
  r.ts_frac = static_cast<uint32_t>(absl::IDivDuration(
      frac,
      header.precision == TimestampPrecision::kNano ? absl::Nanoseconds(1)
                                                    : absl::Microseconds(1),
      &unused_rem));
  r.caplen = static_cast<uint32_t>(data.size());
  r.len = orig_len == 0 ? r.caplen : orig_len;
  AppendRecordHeader(header, r, out);
  out->append(data.data(), data.size());
  return absl::OkStatus();
}

ScanResult ScanRecords(const GlobalHeader& header, absl::string_view data) {
  ScanResult result;
  size_t pos = 0;
  while (data.size() - pos >= kRecordHeaderSize) {
    // Cannot fail: at least kRecordHeaderSize bytes remain.
    const RecordHeader r = *DecodeRecordHeader(header, data.substr(pos));
    // The position is complete_bytes; callers add their own context.
    result.status = CheckRecordHeader(header, r);
    if (!result.status.ok()) break;
    const size_t record_size = kRecordHeaderSize + size_t{r.caplen};
    // libpcap writes the header and the data separately: a header whose data
    // is not there yet is an unfinished record, not corruption.
    if (data.size() - pos < record_size) break;
    const absl::Time ts = r.Timestamp(header.precision);
    if (!result.first_time.has_value()) result.first_time = ts;
    result.last_time = ts;
    ++result.records;
    pos += record_size;
  }
  result.complete_bytes = pos;
  return result;
}

}  // namespace pc::pcap
