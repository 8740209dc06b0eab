// Reads one capture as a single pcap stream: the runs of the capture
// directory (run-1-w5, run-2-w5, ...) in order, each run's ring oldest file
// first, one global header at the start. With follow, waits at the end of the
// newest run until the capture stops. Thread-compatible (one download).
#ifndef NODE_AGENT_CAPTURE_READER_H_
#define NODE_AGENT_CAPTURE_READER_H_

#include <functional>
#include <memory>
#include <string>

#include "common/capture_service.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/ring_reader.h"

namespace pc::agent {

class CaptureReader : public PcapSource {
 public:
  // still_running: whether tcpdump may still write to the capture.
  CaptureReader(std::string capture_dir, std::function<bool()> still_running);

  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override;
  bool Done() override;

 private:
  absl::Status OpenNextRun(bool* opened);

  const std::string dir_;
  std::function<bool()> still_running_;
  std::unique_ptr<pcap::RingReader> reader_;
  int run_ = 0;
  int runs_opened_ = 0;
  uint64_t skip_ = 0;  // header bytes of a later run still to drop
  std::optional<pcap::GlobalHeader> header_;
  std::string held_;  // data read by Done() that Read() has not returned
};

}  // namespace pc::agent

#endif  // NODE_AGENT_CAPTURE_READER_H_
