// Helpers for the pcap tests: a fresh temp directory per test, file writes
// with chosen modification times (to synthesize a tcpdump ring), packets that
// carry a sequence number, and a parser that reads those numbers back out of
// a pcap stream. Test-only; thread-compatible.
#ifndef COMMON_PCAP_PCAP_TEST_UTIL_H_
#define COMMON_PCAP_PCAP_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/pcap/pcap_format.h"

namespace pc::pcap::testutil {

// A new empty directory under $TEST_TMPDIR (or /tmp).
std::string MakeTempDir();

// Replace (O_TRUNC, same inode if it exists) / append; abort the test on error.
void WriteFile(const std::string& path, absl::string_view data);
void AppendFile(const std::string& path, absl::string_view data);
void SetMtime(const std::string& path, absl::Time mtime);
std::string ReadFile(const std::string& path);

// An Ethernet/IPv4/UDP frame of `size` bytes (at least 46) whose UDP payload
// starts with `seq` (big-endian), so tcpdump prints one line per packet.
std::string MakePacket(uint32_t seq, size_t size = 60);

// Records of packets with sequence numbers [first, first + count), each
// stamped base + seq milliseconds.
std::string MakeRecords(const GlobalHeader& header, uint32_t first,
                        uint32_t count, size_t packet_size = 60);

// A whole pcap file: header + MakeRecords().
std::string MakePcapFile(const GlobalHeader& header, uint32_t first,
                         uint32_t count, size_t packet_size = 60);

// Parses a complete pcap stream (header + whole records, nothing left over)
// and returns the sequence numbers of its packets in stream order.
absl::StatusOr<std::vector<uint32_t>> SequenceNumbers(absl::string_view stream);

// [first, first + count)
std::vector<uint32_t> Range(uint32_t first, uint32_t count);

}  // namespace pc::pcap::testutil

#endif  // COMMON_PCAP_PCAP_TEST_UTIL_H_
