// Counts the packets of a pcap or pcapng byte stream as it arrives in pieces
// cut anywhere (DownloadCapture messages are cut at arbitrary byte offsets,
// and servers leave DownloadCaptureResponse.packets at 0). Pure: no I/O.
// Thread-compatible.
#ifndef CLI_PACKET_COUNTER_H_
#define CLI_PACKET_COUNTER_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace pc::cli {

class PacketCounter {
 public:
  // The next bytes of the stream.
  void Add(absl::string_view data);

  // Complete packet records seen so far (pcap records; pcapng Enhanced,
  // Simple and obsolete Packet Blocks).
  uint64_t packets() const { return packets_; }
  uint64_t bytes() const { return bytes_; }
  // False once the stream is neither pcap nor pcapng (counting stops).
  bool recognized() const { return !unknown_; }

 private:
  enum class Format { kUnknownYet, kPcap, kPcapng };

  // Consumes header bytes from data into pending_ until `size` are there.
  bool Fill(absl::string_view* data, size_t size);
  uint32_t Read32(size_t at) const;

  Format format_ = Format::kUnknownYet;
  bool unknown_ = false;
  bool big_endian_ = false;
  bool in_file_header_ = true;  // pcap: the 24-byte global header
  std::string pending_;         // bytes of the header being read
  uint64_t skip_ = 0;           // body bytes of the current record left
  uint64_t packets_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace pc::cli

#endif  // CLI_PACKET_COUNTER_H_
