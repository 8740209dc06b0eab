#include "common/pcap/pcap_format.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"

namespace pc::pcap {
namespace {

using testutil::MakePacket;

std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

GlobalHeader Header(bool big_endian, TimestampPrecision precision) {
  GlobalHeader h;
  h.big_endian = big_endian;
  h.precision = precision;
  h.snaplen = 65535;
  h.linktype = 113;  // Linux cooked
  h.thiszone = -3600;
  h.sigfigs = 7;
  return h;
}

TEST(GlobalHeaderTest, MagicBytesForEachByteOrderAndPrecision) {
  EXPECT_EQ(SerializeGlobalHeader(Header(false, TimestampPrecision::kMicro))
                .substr(0, 4),
            Bytes({0xd4, 0xc3, 0xb2, 0xa1}));
  EXPECT_EQ(SerializeGlobalHeader(Header(true, TimestampPrecision::kMicro))
                .substr(0, 4),
            Bytes({0xa1, 0xb2, 0xc3, 0xd4}));
  EXPECT_EQ(SerializeGlobalHeader(Header(false, TimestampPrecision::kNano))
                .substr(0, 4),
            Bytes({0x4d, 0x3c, 0xb2, 0xa1}));
  EXPECT_EQ(SerializeGlobalHeader(Header(true, TimestampPrecision::kNano))
                .substr(0, 4),
            Bytes({0xa1, 0xb2, 0x3c, 0x4d}));
}

TEST(GlobalHeaderTest, RoundTripsAllVariants) {
  for (bool big_endian : {false, true}) {
    for (TimestampPrecision p :
         {TimestampPrecision::kMicro, TimestampPrecision::kNano}) {
      const GlobalHeader h = Header(big_endian, p);
      const std::string bytes = SerializeGlobalHeader(h);
      ASSERT_EQ(bytes.size(), kGlobalHeaderSize);
      absl::StatusOr<GlobalHeader> parsed = ParseGlobalHeader(bytes);
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      EXPECT_EQ(*parsed, h);
      EXPECT_EQ(SerializeGlobalHeader(*parsed), bytes);
    }
  }
}

TEST(GlobalHeaderTest, ParsesKnownBigEndianBytes) {
  // A header as a big-endian machine writes it: v2.4, snaplen 96, Ethernet.
  const std::string bytes =
      Bytes({0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0,  //
             0,    0,    0,    96,   0, 0, 0, 1});
  absl::StatusOr<GlobalHeader> h = ParseGlobalHeader(bytes);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(h->big_endian);
  EXPECT_EQ(h->precision, TimestampPrecision::kMicro);
  EXPECT_EQ(h->version_major, 2);
  EXPECT_EQ(h->version_minor, 4);
  EXPECT_EQ(h->snaplen, 96u);
  EXPECT_EQ(h->linktype, 1u);
}

TEST(GlobalHeaderTest, ShortInputIsOutOfRange) {
  const std::string bytes = SerializeGlobalHeader(GlobalHeader());
  for (size_t n = 0; n < kGlobalHeaderSize; ++n) {
    EXPECT_EQ(ParseGlobalHeader(absl::string_view(bytes).substr(0, n))
                  .status()
                  .code(),
              absl::StatusCode::kOutOfRange)
        << n;
  }
}

TEST(GlobalHeaderTest, UnknownMagicIsInvalidArgument) {
  std::string pcapng = SerializeGlobalHeader(GlobalHeader());
  pcapng.replace(0, 4, Bytes({0x0a, 0x0d, 0x0d, 0x0a}));
  absl::StatusOr<GlobalHeader> h = ParseGlobalHeader(pcapng);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find("magic"), absl::string_view::npos)
      << h.status();
}

TEST(GlobalHeaderTest, OtherMajorVersionIsInvalidArgument) {
  GlobalHeader h;
  h.version_major = 1;
  EXPECT_EQ(ParseGlobalHeader(SerializeGlobalHeader(h)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GlobalHeaderTest, SameStreamFormatIgnoresOnlyZoneAndSigfigs) {
  const GlobalHeader a;
  GlobalHeader b = a;
  b.thiszone = 60;
  b.sigfigs = 3;
  EXPECT_TRUE(SameStreamFormat(a, b));
  b = a;
  b.linktype = 113;
  EXPECT_FALSE(SameStreamFormat(a, b));
  b = a;
  b.snaplen = 1600;
  EXPECT_FALSE(SameStreamFormat(a, b));
  b = a;
  b.precision = TimestampPrecision::kNano;
  EXPECT_FALSE(SameStreamFormat(a, b));
  b = a;
  b.big_endian = true;
  EXPECT_FALSE(SameStreamFormat(a, b));
}

TEST(RecordHeaderTest, DecodesBothByteOrders) {
  const RecordHeader want{0x65000001, 123456, 60, 1514};
  for (bool big_endian : {false, true}) {
    GlobalHeader h;
    h.big_endian = big_endian;
    std::string bytes;
    AppendRecordHeader(h, want, &bytes);
    ASSERT_EQ(bytes.size(), kRecordHeaderSize);
    // Field order and byte order on the wire: ts_sec first.
    EXPECT_EQ(bytes.substr(0, 4),
              big_endian ? Bytes({0x65, 0, 0, 1}) : Bytes({1, 0, 0, 0x65}));
    absl::StatusOr<RecordHeader> r = DecodeRecordHeader(h, bytes);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->ts_sec, want.ts_sec);
    EXPECT_EQ(r->ts_frac, want.ts_frac);
    EXPECT_EQ(r->caplen, want.caplen);
    EXPECT_EQ(r->len, want.len);
  }
  EXPECT_EQ(DecodeRecordHeader(GlobalHeader(), "short").status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(RecordHeaderTest, TimestampHonoursPrecision) {
  const RecordHeader r{1700000000, 123456789, 0, 0};
  EXPECT_EQ(r.Timestamp(TimestampPrecision::kNano),
            absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(123456789));
  const RecordHeader us{1700000000, 123456, 0, 0};
  EXPECT_EQ(us.Timestamp(TimestampPrecision::kMicro),
            absl::FromUnixSeconds(1700000000) + absl::Microseconds(123456));
  // ts_sec is unsigned: past 2038.
  const RecordHeader late{0xF0000000u, 0, 0, 0};
  EXPECT_EQ(late.Timestamp(TimestampPrecision::kMicro),
            absl::FromUnixSeconds(int64_t{0xF0000000u}));
}

TEST(AppendRecordTest, TruncatesToPrecisionAndRoundTrips) {
  const absl::Time t =
      absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(987654321);
  for (TimestampPrecision p :
       {TimestampPrecision::kMicro, TimestampPrecision::kNano}) {
    for (bool big_endian : {false, true}) {
      GlobalHeader h;
      h.precision = p;
      h.big_endian = big_endian;
      std::string out;
      ASSERT_TRUE(AppendRecord(h, t, "abc", 1500, &out).ok());
      ASSERT_EQ(out.size(), kRecordHeaderSize + 3);
      const RecordHeader r = *DecodeRecordHeader(h, out);
      EXPECT_EQ(r.caplen, 3u);
      EXPECT_EQ(r.len, 1500u);
      EXPECT_EQ(r.Timestamp(p), p == TimestampPrecision::kNano
                                    ? t
                                    : absl::FromUnixSeconds(1700000000) +
                                          absl::Microseconds(987654));
      EXPECT_EQ(out.substr(kRecordHeaderSize), "abc");
    }
  }
}

TEST(AppendRecordTest, RejectsWhatTheFormatCannotHold) {
  GlobalHeader h;
  std::string out;
  EXPECT_EQ(AppendRecord(h, absl::UnixEpoch() - absl::Seconds(1), "x", 0, &out)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      AppendRecord(h, absl::FromUnixSeconds(int64_t{1} << 32), "x", 0, &out)
          .code(),
      absl::StatusCode::kInvalidArgument);
  h.snaplen = 10;  // max caplen 10 + slack
  EXPECT_EQ(AppendRecord(h, absl::UnixEpoch(),
                         std::string(10 + kSnaplenSlack + 1, 'x'), 0, &out)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(out.empty());
}

TEST(MaxPlausibleCaplenTest, FollowsSnaplenWithinLimits) {
  GlobalHeader h;
  h.snaplen = 1600;
  EXPECT_EQ(MaxPlausibleCaplen(h), 1600 + kSnaplenSlack);
  h.snaplen = kMaxCaplen;
  EXPECT_EQ(MaxPlausibleCaplen(h), kMaxCaplen);
  h.snaplen = 0;  // libpcap reads 0 as "the maximum"
  EXPECT_EQ(MaxPlausibleCaplen(h), kMaxCaplen);
  h.snaplen = 0xffffffffu;
  EXPECT_EQ(MaxPlausibleCaplen(h), kMaxCaplen);
}

// Records of assorted sizes, including an empty one, and the offsets where
// each ends.
struct Stream {
  std::string records;
  std::vector<size_t> ends;
  std::vector<absl::Time> times;
};

Stream MakeStream(const GlobalHeader& h) {
  Stream s;
  const std::vector<size_t> sizes = {60, 0, 1, 1514, 17, 46, 300};
  absl::Time t = absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(5);
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string packet =
        sizes[i] >= 46 ? MakePacket(static_cast<uint32_t>(i), sizes[i])
                       : std::string(sizes[i], 'p');
    EXPECT_TRUE(AppendRecord(h, t, packet, 0, &s.records).ok());
    s.ends.push_back(s.records.size());
    s.times.push_back(t);
    t += absl::Milliseconds(3);
  }
  return s;
}

TEST(ScanRecordsTest, CutsOnlyAtRecordBoundariesForEveryPrefix) {
  for (bool big_endian : {false, true}) {
    GlobalHeader h;
    h.big_endian = big_endian;
    h.precision = TimestampPrecision::kNano;
    const Stream s = MakeStream(h);
    for (size_t len = 0; len <= s.records.size(); ++len) {
      const ScanResult scan =
          ScanRecords(h, absl::string_view(s.records).substr(0, len));
      ASSERT_TRUE(scan.status.ok()) << len << ": " << scan.status;
      size_t want_records = 0;
      size_t want_cut = 0;
      for (size_t end : s.ends) {
        if (end <= len) {
          ++want_records;
          want_cut = end;
        }
      }
      ASSERT_EQ(scan.complete_bytes, want_cut) << "prefix " << len;
      ASSERT_EQ(scan.records, want_records) << "prefix " << len;
      if (want_records == 0) {
        EXPECT_FALSE(scan.first_time.has_value());
        EXPECT_FALSE(scan.last_time.has_value());
      } else {
        EXPECT_EQ(scan.first_time, s.times.front());
        EXPECT_EQ(scan.last_time, s.times[want_records - 1]);
      }
    }
  }
}

TEST(ScanRecordsTest, ImplausibleCaplenIsCorruptAfterTheGoodRecords) {
  GlobalHeader h;
  const Stream s = MakeStream(h);
  std::string data = s.records;
  AppendRecordHeader(h, RecordHeader{1, 0, kMaxCaplen + 1, kMaxCaplen + 1},
                     &data);
  data.append(100, 'x');
  const ScanResult scan = ScanRecords(h, data);
  EXPECT_TRUE(scan.corrupt());
  EXPECT_EQ(scan.status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(scan.complete_bytes, s.records.size());
  EXPECT_EQ(scan.records, s.ends.size());
}

TEST(ScanRecordsTest, CaplenBeyondSnaplenSlackIsCorruptEvenWhenIncomplete) {
  GlobalHeader h;
  h.snaplen = 100;
  std::string ok;
  AppendRecordHeader(h, RecordHeader{1, 0, 100 + kSnaplenSlack, 2000}, &ok);
  // Header only: an unfinished record, not corruption.
  EXPECT_FALSE(ScanRecords(h, ok).corrupt());
  EXPECT_EQ(ScanRecords(h, ok).complete_bytes, 0u);

  std::string bad;
  AppendRecordHeader(h, RecordHeader{1, 0, 100 + kSnaplenSlack + 1, 2000},
                     &bad);
  // A header alone already proves the stream is garbage: waiting for its
  // "data" would stall the reader forever.
  const ScanResult scan = ScanRecords(h, bad);
  EXPECT_TRUE(scan.corrupt());
  EXPECT_EQ(scan.complete_bytes, 0u);
  EXPECT_EQ(scan.records, 0u);
}

TEST(ScanRecordsTest, EmptyDataIsNothing) {
  const ScanResult scan = ScanRecords(GlobalHeader(), "");
  EXPECT_TRUE(scan.status.ok());
  EXPECT_EQ(scan.complete_bytes, 0u);
  EXPECT_EQ(scan.records, 0u);
}

}  // namespace
}  // namespace pc::pcap
