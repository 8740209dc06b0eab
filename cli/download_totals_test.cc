#include "cli/download_totals.h"

#include <string>

#include "gtest/gtest.h"

namespace pc::cli {
namespace {

// A little-endian microsecond pcap of `packets` records of varying sizes.
std::string Pcap(int packets) {
  std::string out;
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (8 * i));
  };
  put32(0xa1b2c3d4);
  out += std::string("\x02\x00\x04\x00", 4);
  put32(0);
  put32(0);
  put32(262144);
  put32(1);
  for (int i = 0; i < packets; ++i) {
    uint32_t caplen = 42 + (i * 37) % 200;
    put32(1700000000 + i);
    put32(i);
    put32(caplen);
    put32(caplen);
    out += std::string(caplen, static_cast<char>(i));
  }
  return out;
}

// Regression: "wrote 6416 bytes (0 packets)" for a file with 58 packets. The
// servers cut DownloadCaptureResponse messages at arbitrary offsets and leave
// their `packets` field at 0, so the totals must come from the bytes.
TEST(DownloadTotals, CountsPacketsFromTheBytesNotThePacketsField) {
  const std::string pcap = Pcap(58);
  for (size_t cut : {size_t{1}, size_t{7}, size_t{100}, size_t{65536}}) {
    DownloadTotals totals;
    for (size_t at = 0; at < pcap.size(); at += cut) {
      packetcapture::v1::DownloadCaptureResponse message;
      message.set_data(pcap.substr(at, cut));
      message.set_offset(at);  // packets left unset, as the servers send it
      totals.Add(message);
    }
    EXPECT_EQ(totals.bytes(), pcap.size()) << cut;
    EXPECT_EQ(totals.packets(), 58u) << "messages of " << cut << " bytes";
  }
}

}  // namespace
}  // namespace pc::cli
