#include "cli/download_totals.h"

namespace pc::cli {

void DownloadTotals::Add(
    const packetcapture::v1::DownloadCaptureResponse& message) {
  bytes_ += message.data().size();
  // The servers cut messages anywhere and leave `packets` at 0: count the
  // records in the bytes themselves.
  counter_.Add(message.data());
  packets_ = counter_.packets();
}

}  // namespace pc::cli
