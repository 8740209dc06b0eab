// What `capturectl download` reports at the end ("wrote N bytes (P
// packets)"): totals over the DownloadCaptureResponse messages of one
// download. Pure; thread-compatible.
#ifndef CLI_DOWNLOAD_TOTALS_H_
#define CLI_DOWNLOAD_TOTALS_H_

#include <cstdint>

#include "cli/packet_counter.h"
#include "proto/packetcapture.pb.h"

namespace pc::cli {

class DownloadTotals {
 public:
  void Add(const packetcapture::v1::DownloadCaptureResponse& message);
  uint64_t bytes() const { return bytes_; }
  uint64_t packets() const { return packets_; }

 private:
  PacketCounter counter_;
  uint64_t bytes_ = 0;
  uint64_t packets_ = 0;
};

}  // namespace pc::cli

#endif  // CLI_DOWNLOAD_TOTALS_H_
