// Test helpers for pcapng output: a strict little parser of the blocks our
// writer emits (SHB, IDB, EPB, host byte order) and a way to run
// capinfos/tshark on a file. Test-only; thread-compatible.
#ifndef COMMON_PCAP_PCAPNG_TEST_UTIL_H_
#define COMMON_PCAP_PCAPNG_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pc::pcapng::testutil {

// Option code -> values, in order.
using Options = std::map<uint16_t, std::vector<std::string>>;

struct ParsedInterface {
  uint16_t linktype = 0;
  uint32_t snaplen = 0;
  Options options;
};

struct ParsedPacket {
  uint32_t interface_id = 0;
  uint64_t timestamp = 0;
  uint32_t orig_len = 0;
  std::string data;
};

struct ParsedPcapng {
  Options section;
  std::vector<ParsedInterface> interfaces;
  std::vector<ParsedPacket> packets;
};

// DataLoss on anything malformed: bad lengths, trailing bytes, an EPB
// before its IDB.
absl::StatusOr<ParsedPcapng> ParsePcapng(absl::string_view data);

// The sequence number MakePacket() put in `packet` (pcap_test_util.h).
uint32_t SequenceOf(absl::string_view packet);

// Runs argv (argv[0] a path) with stdout to *out; returns the exit status
// (-1 if it could not run).
int RunTool(const std::vector<std::string>& argv, std::string* out);

}  // namespace pc::pcapng::testutil

#endif  // COMMON_PCAP_PCAPNG_TEST_UTIL_H_
