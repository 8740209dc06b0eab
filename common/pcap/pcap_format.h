// The classic pcap file format (not pcapng): global header and record header
// encoding, and ScanRecords(), which finds the last complete record in a buffer
// so that a reader of a file libpcap is still writing never cuts a record in
// half. Pure functions without I/O; thread-safe.
#ifndef COMMON_PCAP_PCAP_FORMAT_H_
#define COMMON_PCAP_PCAP_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"

namespace pc::pcap {

inline constexpr size_t kGlobalHeaderSize = 24;
inline constexpr size_t kRecordHeaderSize = 16;

// Magic numbers as they read in the writer's byte order; the byte-swapped
// value means the file was written on a machine of the other endianness.
inline constexpr uint32_t kMagicMicros = 0xa1b2c3d4;
inline constexpr uint32_t kMagicNanos = 0xa1b23c4d;

inline constexpr uint16_t kVersionMajor = 2;
inline constexpr uint16_t kVersionMinor = 4;

// libpcap's largest snapshot length (MAXIMUM_SNAPLEN); tcpdump's default -s.
// A record longer than this is garbage, not a packet.
inline constexpr uint32_t kMaxCaplen = 262144;
// Headroom over the header's snaplen before a caplen counts as implausible:
// libpcap may add a pseudo-header (e.g. Linux cooked capture on "any") after
// the snaplen was recorded, so caplen can exceed snaplen by a few bytes.
inline constexpr uint32_t kSnaplenSlack = 256;

inline constexpr uint32_t kLinktypeEthernet = 1;

enum class TimestampPrecision { kMicro, kNano };

// The 24-byte file header. Every field is kept so that SerializeGlobalHeader()
// reproduces the parsed bytes exactly.
struct GlobalHeader {
  bool big_endian = false;  // byte order of every multi-byte field in the file
  TimestampPrecision precision = TimestampPrecision::kMicro;
  uint16_t version_major = kVersionMajor;
  uint16_t version_minor = kVersionMinor;
  int32_t thiszone = 0;
  uint32_t sigfigs = 0;
  uint32_t snaplen = kMaxCaplen;
  // Raw field: the link type in the low 16 bits (1 = Ethernet); newer
  // libpcaps may put FCS information in the high bits.
  uint32_t linktype = kLinktypeEthernet;

  // The magic number in the writer's byte order.
  uint32_t magic() const {
    return precision == TimestampPrecision::kNano ? kMagicNanos : kMagicMicros;
  }
};

bool operator==(const GlobalHeader& a, const GlobalHeader& b);
inline bool operator!=(const GlobalHeader& a, const GlobalHeader& b) {
  return !(a == b);
}

// True when records written under `b` can follow a stream that began with
// header `a` (same byte order, precision, version, snaplen and linktype);
// thiszone/sigfigs are ignored. Files of one tcpdump run always agree.
bool SameStreamFormat(const GlobalHeader& a, const GlobalHeader& b);

// Parses the first 24 bytes of `data`.
// Errors: OutOfRange if fewer than 24 bytes are available (the writer may not
// have written the header yet: retry later); InvalidArgument for an unknown
// magic number (not a classic pcap file, e.g. pcapng) or a version other
// than 2.x.
absl::StatusOr<GlobalHeader> ParseGlobalHeader(absl::string_view data);

// The 24 header bytes, in the header's own byte order.
std::string SerializeGlobalHeader(const GlobalHeader& header);

// One record header with its raw fields; ts_frac is µs or ns depending on
// the file's precision.
struct RecordHeader {
  uint32_t ts_sec = 0;
  uint32_t ts_frac = 0;
  uint32_t caplen = 0;  // bytes of packet data that follow the header
  uint32_t len = 0;     // length of the packet on the wire

  absl::Time Timestamp(TimestampPrecision precision) const;
};

// Decodes the first 16 bytes of `data` in the byte order of `header`.
// OutOfRange if fewer than 16 bytes are available.
absl::StatusOr<RecordHeader> DecodeRecordHeader(const GlobalHeader& header,
                                                absl::string_view data);

// The largest caplen accepted under `header`: min(kMaxCaplen, snaplen +
// kSnaplenSlack), with snaplen 0 meaning kMaxCaplen as libpcap reads it.
uint32_t MaxPlausibleCaplen(const GlobalHeader& header);

// DataLoss if `record` cannot be a real record under `header`.
absl::Status CheckRecordHeader(const GlobalHeader& header,
                               const RecordHeader& record);

// Appends the 16 header bytes in the byte order of `header`.
void AppendRecordHeader(const GlobalHeader& header, const RecordHeader& record,
                        std::string* out);

// Appends a record (header + `data`) stamped `timestamp`, truncated to the
// header's precision. `orig_len` 0 means data.size(). InvalidArgument if the
// timestamp does not fit the format (before 1970 or after 2106) or `data`
// is longer than MaxPlausibleCaplen(header).
absl::Status AppendRecord(const GlobalHeader& header, absl::Time timestamp,
                          absl::string_view data, uint32_t orig_len,
                          std::string* out);

// What ScanRecords() found.
struct ScanResult {
  // Bytes from the start of the data up to the end of the last complete
  // record: the point where a reader may cut without splitting a record.
  size_t complete_bytes = 0;
  // Complete records within complete_bytes.
  uint64_t records = 0;
  // Timestamps of the first and last complete record in file order; empty
  // when records == 0.
  absl::optional<absl::Time> first_time;
  absl::optional<absl::Time> last_time;
  // OK, or DataLoss (from CheckRecordHeader) when the record header at
  // complete_bytes is implausible: the data is not a pcap record stream from
  // there on. An incomplete
  // record at the end is not an error: the writer has not finished it yet.
  absl::Status status;

  bool corrupt() const { return !status.ok(); }
};

// Walks the records in `data`, which must begin at a record boundary (i.e.
// just after the global header or after a previous cut point). Stops before
// the first record whose header or data is incomplete, or whose header is
// implausible.
ScanResult ScanRecords(const GlobalHeader& header, absl::string_view data);

}  // namespace pc::pcap

#endif  // COMMON_PCAP_PCAP_FORMAT_H_
