#include "common/pcap/pcap_test_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/pcap/pcap_format.h"
#include "gtest/gtest.h"

namespace pc::pcap::testutil {
namespace {

// Test helpers fail hard: a broken fixture makes every later check noise.
void CheckSys(bool ok, const std::string& what) {
  if (!ok) {
    ADD_FAILURE() << what << ": " << std::strerror(errno);
    abort();
  }
}

void WriteAll(int fd, absl::string_view data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    CheckSys(n > 0, absl::StrCat("write ", path));
    done += static_cast<size_t>(n);
  }
}

void Put16(uint16_t v, std::string* s, size_t at) {
  (*s)[at] = static_cast<char>(v >> 8);
  (*s)[at + 1] = static_cast<char>(v & 0xff);
}

}  // namespace

std::string MakeTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl =
      absl::StrCat(base != nullptr ? base : "/tmp", "/pcap_test_XXXXXX");
  CheckSys(mkdtemp(&tmpl[0]) != nullptr, "mkdtemp");
  return tmpl;
}

void WriteFile(const std::string& path, absl::string_view data) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CheckSys(fd >= 0, absl::StrCat("open ", path));
  WriteAll(fd, data, path);
  close(fd);
}

void AppendFile(const std::string& path, absl::string_view data) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  CheckSys(fd >= 0, absl::StrCat("open ", path));
  WriteAll(fd, data, path);
  close(fd);
}

void SetMtime(const std::string& path, absl::Time mtime) {
  const timespec ts = absl::ToTimespec(mtime);
  const timespec times[2] = {ts, ts};  // atime, mtime
  CheckSys(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0,
           absl::StrCat("utimensat ", path));
}

std::string ReadFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CheckSys(fd >= 0, absl::StrCat("open ", path));
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    CheckSys(n >= 0, absl::StrCat("read ", path));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string MakePacket(uint32_t seq, size_t size) {
  constexpr size_t kMin = 14 + 20 + 8 + 4;
  if (size < kMin) size = kMin;
  std::string p(size, '\0');
  // Ethernet: locally administered MACs, EtherType IPv4.
  const char dst[6] = {0x02, 0, 0, 0, 0, 0x02};
  const char src[6] = {0x02, 0, 0, 0, 0, 0x01};
  std::memcpy(&p[0], dst, 6);
  std::memcpy(&p[6], src, 6);
  Put16(0x0800, &p, 12);
  // IPv4 header: 10.0.0.1 -> 10.0.0.2, UDP, checksum left 0 (tcpdump does
  // not require it to print the packet).
  const size_t ip = 14;
  p[ip] = 0x45;
  Put16(static_cast<uint16_t>(size - 14), &p, ip + 2);
  p[ip + 8] = 64;  // TTL
  p[ip + 9] = 17;  // UDP
  const char saddr[4] = {10, 0, 0, 1};
  const char daddr[4] = {10, 0, 0, 2};
  std::memcpy(&p[ip + 12], saddr, 4);
  std::memcpy(&p[ip + 16], daddr, 4);
  // UDP 40000 -> 9.
  const size_t udp = ip + 20;
  Put16(40000, &p, udp);
  Put16(9, &p, udp + 2);
  Put16(static_cast<uint16_t>(size - udp), &p, udp + 4);
  const size_t payload = udp + 8;
  p[payload] = static_cast<char>(seq >> 24);
  p[payload + 1] = static_cast<char>((seq >> 16) & 0xff);
  p[payload + 2] = static_cast<char>((seq >> 8) & 0xff);
  p[payload + 3] = static_cast<char>(seq & 0xff);
  return p;
}

std::string MakeRecords(const GlobalHeader& header, uint32_t first,
                        uint32_t count, size_t packet_size) {
  const absl::Time base = absl::FromUnixSeconds(1700000000);
  std::string out;
  for (uint32_t seq = first; seq < first + count; ++seq) {
    const absl::Status s = AppendRecord(header, base + absl::Milliseconds(seq),
                                        MakePacket(seq, packet_size), 0, &out);
    if (!s.ok()) {
      ADD_FAILURE() << s;
      abort();
    }
  }
  return out;
}

std::string MakePcapFile(const GlobalHeader& header, uint32_t first,
                         uint32_t count, size_t packet_size) {
  return SerializeGlobalHeader(header) +
         MakeRecords(header, first, count, packet_size);
}

absl::StatusOr<std::vector<uint32_t>> SequenceNumbers(
    absl::string_view stream) {
  absl::StatusOr<GlobalHeader> header = ParseGlobalHeader(stream);
  if (!header.ok()) return header.status();
  absl::string_view records = stream.substr(kGlobalHeaderSize);
  const ScanResult scan = ScanRecords(*header, records);
  if (!scan.status.ok()) return scan.status;
  if (scan.complete_bytes != records.size()) {
    return absl::DataLossError(
        absl::StrCat("stream ends with ", records.size() - scan.complete_bytes,
                     " bytes of an incomplete record"));
  }
  std::vector<uint32_t> seqs;
  size_t pos = 0;
  while (pos < records.size()) {
    const RecordHeader r = *DecodeRecordHeader(*header, records.substr(pos));
    absl::string_view data = records.substr(pos + kRecordHeaderSize, r.caplen);
    constexpr size_t kSeqAt = 14 + 20 + 8;
    if (data.size() < kSeqAt + 4) {
      return absl::DataLossError("packet too short for a sequence number");
    }
    const auto* b =
        reinterpret_cast<const unsigned char*>(data.data()) + kSeqAt;
    seqs.push_back((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
                   (uint32_t{b[2]} << 8) | uint32_t{b[3]});
    pos += kRecordHeaderSize + r.caplen;
  }
  if (seqs.size() != scan.records) {
    return absl::InternalError("record count mismatch");
  }
  return seqs;
}

std::vector<uint32_t> Range(uint32_t first, uint32_t count) {
  std::vector<uint32_t> v;
  for (uint32_t i = 0; i < count; ++i) v.push_back(first + i);
  return v;
}

}  // namespace pc::pcap::testutil
